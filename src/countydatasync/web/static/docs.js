/* Starts Swagger UI on the app's own OpenAPI document (kept out of the HTML so the CSP can forbid inline scripts). */
"use strict";
window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });

/* The parcel map: parcels of the viewport from /api/parcels, coloured by sync status, with a legend,
   a status filter and a popup per parcel. Data reaches the page only through textContent. */
"use strict";

(function () {
  const { el, getJSON, fmt, asStored } = window.cds;
  // The API simplifies for zoom 0 to 24; closer than 20 (a tenth of a metre per pixel) shows nothing more.
  const MAX_ZOOM = 20;
  const COLORS = { synced: "#1a9641", pending: "#e6b800", error: "#d7191c" };
  const LABELS = { synced: "Synced", pending: "Pending", error: "Error" };
  const mapNode = document.getElementById("map");
  let map, layer, config, inflight = null, timer = null;

  function checkedStatuses() {
    return Array.from(document.querySelectorAll("input[name=status]:checked")).map(i => i.value);
  }

  function note(text) {
    document.getElementById("map-note").textContent = text;
  }

  function row(label, value) {
    return el("tr", {}, [el("th", { text: label, scope: "row" }), el("td", { text: asStored(value) })]);
  }

  async function showPopup(feature, target) {
    // The content is built before the popup opens, so Leaflet pans the map to fit all of it.
    const box = el("div", { className: "popup" });
    try {
      const parcel = await getJSON("/api/parcels/" + encodeURIComponent(feature.properties.key));
      const rows = [
        row(config.key_name, parcel.key),
        row("Status", LABELS[parcel.status] || parcel.status),
      ];
      if (parcel.reason) rows.push(row("Reason", parcel.reason));
      if (parcel.message) rows.push(row("Message", parcel.message));
      for (const [name, value] of Object.entries(parcel.attributes)) rows.push(row(name, value));
      if (parcel.sync.last_synced) rows.push(row("Last synced", parcel.sync.last_synced));
      const title = el("h3", { className: "status-" + parcel.status, text: (LABELS[parcel.status] || parcel.status) + " parcel" });
      box.append(title, el("table", { className: "attributes" }, [el("tbody", {}, rows)]));
    } catch (error) {
      box.append(el("p", { className: "error", text: "Could not load the parcel: " + error.message }));
    }
    target.unbindPopup().bindPopup(box, { maxWidth: 360, maxHeight: 320 }).openPopup();
  }

  function style(feature) {
    const color = COLORS[feature.properties.status] || "#777";
    return { color: color, weight: 1, fillColor: color, fillOpacity: 0.55,
             className: "parcel parcel-" + feature.properties.status };
  }

  // The viewport within the world as the API's bbox, or null when it shows none of it (the map panned past
  // the antimeridian or a pole: Leaflet allows that, the API wants west < east and south < north).
  function viewBox() {
    const bounds = map.getBounds();
    const [west, south, east, north] = [Math.max(bounds.getWest(), -180), Math.max(bounds.getSouth(), -90),
      Math.min(bounds.getEast(), 180), Math.min(bounds.getNorth(), 90)].map(v => v.toFixed(6));
    return Number(west) < Number(east) && Number(south) < Number(north) ? [west, south, east, north] : null;
  }

  function showNothing(text) {
    layer.clearLayers();
    note(text);
    mapNode.dataset.features = "0";
    mapNode.dataset.state = "loaded";
  }

  async function load() {
    const statuses = checkedStatuses();
    const bbox = viewBox();
    if (inflight) inflight.abort();
    if (!statuses.length) { showNothing("No status selected."); return; }
    if (!bbox) { showNothing("Nothing to show here: the map is off the world."); return; }
    const params = new URLSearchParams({ bbox: bbox.join(","), zoom: String(Math.round(map.getZoom())) });
    statuses.forEach(s => params.append("status", s));
    inflight = new AbortController();
    mapNode.dataset.state = "loading";
    try {
      const data = await getJSON("/api/parcels?" + params, { signal: inflight.signal });
      layer.clearLayers();
      layer.addData(data);
      // The key on each shape lets scripts and tests find a parcel; setAttribute never parses markup.
      layer.eachLayer(shape => {
        const node = shape.getElement && shape.getElement();
        if (node) node.setAttribute("data-key", shape.feature.properties.key);
      });
      note(data.truncated
        ? "Showing the first " + fmt(data.returned) + " parcels; zoom in to see all."
        : fmt(data.returned) + " parcels in view.");
      mapNode.dataset.features = String(data.returned);
      mapNode.dataset.state = "loaded";
    } catch (error) {
      if (error.name === "AbortError") return;
      note("Could not load parcels: " + error.message);
      mapNode.dataset.state = "failed";
    }
  }

  function scheduleLoad() {
    clearTimeout(timer);
    timer = setTimeout(load, 120);
  }

  async function legend() {
    try {
      const counts = await getJSON("/api/statistics/status");
      for (const status of Object.keys(COLORS)) {
        document.getElementById("count-" + status).textContent = fmt(counts.counts[status] || 0);
      }
    } catch (error) {
      note("Could not load the status counts: " + error.message);
    }
  }

  async function start() {
    config = await getJSON("/api/map-config");
    // Without a basemap Leaflet sets no zoom limit, and past 24 the API refuses the zoom.
    map = L.map(mapNode, { attributionControl: false, preferCanvas: false, maxZoom: MAX_ZOOM });
    if (config.basemap_url) {
      L.tileLayer(config.basemap_url, { maxZoom: MAX_ZOOM }).addTo(map);
      document.getElementById("attribution").textContent = config.basemap_attribution;
    }
    layer = L.geoJSON(null, {
      style: style,
      onEachFeature: (feature, target) => target.on("click", () => showPopup(feature, target)),
    }).addTo(map);
    if (config.extent) {
      const [w, s, e, n] = config.extent;
      map.fitBounds([[s, w], [n, e]]);
    } else {
      map.setView([0, 0], 2);
      note("No parcels published yet: run a sync first.");
    }
    map.on("moveend", scheduleLoad);
    document.querySelectorAll("input[name=status]").forEach(i => i.addEventListener("change", load));
    legend();
    if (config.extent) load();
  }

  start().catch(error => note("Could not start the map: " + error.message));
})();

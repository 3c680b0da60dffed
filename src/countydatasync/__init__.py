"""CountyDataSync: keeps staging copies of a county's MasterParcels table in sync."""

import logging

__version__ = "0.1.0"

# Library modules only log; handlers are configured once, by the CLI or the server.
logging.getLogger(__name__).addHandler(logging.NullHandler())

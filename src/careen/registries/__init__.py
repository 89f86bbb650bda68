"""Registry adapters: where the inventory and scan results come from (Harbor v2, Harbor 1.x).

:data:`HARBOR_APIS` is the table ``[harbor] api_version`` is looked up in: a new Harbor API
is one module implementing :class:`careen.registries.interface.ScanSource` (its
capabilities, such as ``rescans_by_digest``, saying what differs) and one entry here.
"""

from __future__ import annotations

from careen.registries.harbor_v1 import HarborV1Client
from careen.registries.harbor_v2 import HarborV2Client

__all__ = ["AUTO", "HARBOR_APIS"]

#: ``[harbor] api_version`` -> the client class speaking it.
HARBOR_APIS: dict[str, type[HarborV2Client] | type[HarborV1Client]] = {
    "v2": HarborV2Client,
    "v1": HarborV1Client,
}
#: The ``api_version`` that asks Harbor which of :data:`HARBOR_APIS` it speaks.
AUTO = "auto"

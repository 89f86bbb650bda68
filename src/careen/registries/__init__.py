"""Registry adapters: where the inventory and scan results come from (Harbor v2, Harbor 1.x).

:data:`HARBOR_APIS` is the table ``[harbor] api_version`` is looked up in: a new Harbor API
is one module implementing :class:`careen.registries.interface.ScanSource` (its
capabilities, such as ``rescans_by_digest``, saying what differs) and one entry here.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AUTO", "HARBOR_APIS", "harbor_api"]

#: ``[harbor] api_version`` -> ``module:class`` of the client speaking it. Named, not
#: imported: checking a configuration does not load httpx; :func:`harbor_api` imports the one
#: a client is opened with.
HARBOR_APIS: dict[str, str] = {
    "v2": "careen.registries.harbor_v2:HarborV2Client",
    "v1": "careen.registries.harbor_v1:HarborV1Client",
}
#: The ``api_version`` that asks Harbor which of :data:`HARBOR_APIS` it speaks.
AUTO = "auto"


def harbor_api(name: str) -> Any:
    """The client class of :data:`HARBOR_APIS` ``[name]``, imported now."""
    module, _, attribute = HARBOR_APIS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)

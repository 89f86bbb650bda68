"""One module per command group; importing them registers the commands on the app."""

from careen.cli.commands import (
    config_cmd,  # noqa: F401
    demo_cmd,  # noqa: F401
    export_cmd,  # noqa: F401
    harbor_cmd,  # noqa: F401
    history_cmd,  # noqa: F401
    plan_cmd,  # noqa: F401
    report_cmd,  # noqa: F401
    run_cmd,  # noqa: F401
    sim_cmd,  # noqa: F401
    tree_cmd,  # noqa: F401
    update_cmd,  # noqa: F401
    vulnerable_cmd,  # noqa: F401
)

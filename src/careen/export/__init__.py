"""Hand a plan to an existing build engine: a ``docker-bake.json`` for BuildKit
(:mod:`careen.export.bake`) or a Jenkinsfile stage with parallel branches
(:mod:`careen.export.jenkins`)."""

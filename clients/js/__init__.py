"""clients/js/ is also the Python package ``cloudisense.node.lib`` (pyproject's package-dir): the node
serves ``cloudisense.mjs`` and ``cloudisense.d.ts`` from it at ``/lib/``, so the npm package's file and the
file every node serves are one file.  npm ignores this one (package.json ``files``)."""

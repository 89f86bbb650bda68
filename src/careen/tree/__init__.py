"""The Dockerfile tree: which folder builds which image, and in which order to build them.

* :mod:`careen.tree.dockerfile` parses what matters of a Dockerfile (its parent images);
* :mod:`careen.tree.discover` maps the folders of a tree to images;
* :mod:`careen.tree.graph` orders the images so that parents are built before children.
"""

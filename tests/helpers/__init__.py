"""What the tests share: running the entry scripts as a user would, composing configs, writing datasets in their
official on-disk formats, reading what runs wrote."""

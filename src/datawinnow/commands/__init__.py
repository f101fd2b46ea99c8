"""The sub-commands that have their own module: their parsers and what they run (registered by :mod:`datawinnow.cli`).

- :mod:`.train`: ``train`` and ``delia build-cache``;
- :mod:`.evaluate`: ``evaluate``;
- :mod:`.experiment`: ``run-experiment``;
- :mod:`.report`: ``report``.

With :mod:`datawinnow.cli` and :mod:`datawinnow.cli_options` they form the command-line layer, the only
code that imports argparse: each command maps its flags onto the settings of the layer it calls
(:class:`~datawinnow.runtime.RuntimeOptions`, :class:`~datawinnow.train.config.TrainConfig`, plain keywords).
"""

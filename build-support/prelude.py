# Pants BUILD-file prelude: constants every BUILD file can use.
# MENTATOR_VERSION is the single source of the version: image tags, the PEX's environment
# (read by mentator.version) and the tests' environment all come from here.
MENTATOR_VERSION = "1.2.0"

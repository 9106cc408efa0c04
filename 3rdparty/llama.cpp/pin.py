# Pants BUILD-file prelude: the ONE pin of the llama.cpp engine source.
#
# The engine is compiled from the llama.cpp tree that the PyPI sdist of llama-cpp-python vendors
# under vendor/llama.cpp (tools/server included). The sdist is fetched by `pip download` inside
# docker/Dockerfile (stage engine-source) and checked against this sha256 before use.
# build-support/engine-export.sh parses the two lines below (plain NAME = "value"), and the Pants
# docker_image passes them as build args; change the version and the hash together.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
LLAMA_CPP_PYTHON_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

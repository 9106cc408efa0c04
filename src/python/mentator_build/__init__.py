"""Build and publish the Mentator Docker images (`./pants run src/python/mentator_build:build`)."""

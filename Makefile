# The two commands a user needs are in README.md; everything else is here.
.PHONY: test setup bench fuzz
test:
	scripts/test.sh

setup:
	scripts/setup.sh

# Entry points. Everything they need is installed by scripts/setup.
.PHONY: setup demo demo-down test lint sanity units build molecule

setup:
	scripts/setup

demo:
	scripts/demo

demo-down:
	scripts/demo down

test:
	scripts/test

lint sanity units build molecule:
	scripts/test setup $@

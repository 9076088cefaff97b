"""`python -m vicreg_bench.cli ...` (what torchrun launches): the `vicreg-bench` command line."""

from vicreg_bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

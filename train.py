"""The one entrypoint: `python train.py [overrides]`, or `python train.py -m a=x,y` to sweep."""

from cvsweep.cli import hydra_main

if __name__ == "__main__":
    hydra_main()

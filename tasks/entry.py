"""The start-up every command shares (``python -m tasks.fit``, ``inspect``, ``status``, ``tune``, ``find_init``,
``evaluate``), written once: ``@command("<config>")`` on a module's ``main(cfg)`` makes it the Hydra main of
conf/<config>.yaml that

- registers the configs' OmegaConf resolvers (tasks/resolvers.py) before Hydra composes, and again in the
  job itself (a launcher may run it in another process);
- refuses an unknown key or option with a did-you-mean before Hydra composes (tasks/typos.py);
- sizes PyTorch's thread pools to the CPUs this process may use, shared with fits started beside it
  (tasks/threads.py ``use_allowed_cpus``);
- turns bad input (``nefs.errors.FitnefError``) into one line on stderr and exit status 2.

``main()`` runs the command line; ``main(cfg)`` runs a composed config (Hydra's own pass-through), as
before.
"""
import functools

import hydra

from nefs.errors import reported_as_one_line

from .resolvers import register as register_resolvers
from .threads import use_allowed_cpus
from .typos import refuse_typos


def command(config_name: str, share_cpus: bool = True):
    """Decorator: ``fn(cfg)`` as the command of conf/<config_name>.yaml, with the shared start-up
    (``share_cpus=False``: a command that computes nothing leaves PyTorch's thread pools alone)."""

    def decorate(fn):
        @functools.wraps(fn)
        def job(cfg):
            register_resolvers()
            with reported_as_one_line():
                if share_cpus:
                    use_allowed_cpus()
                return fn(cfg)

        hydra_main = hydra.main(config_path="../conf", config_name=config_name, version_base="1.3")(job)

        @functools.wraps(fn)
        def main(cfg=None):
            if cfg is None:
                register_resolvers()
                refuse_typos(config_name)   # did-you-mean before Hydra composes
            return hydra_main(cfg)

        main.config_name = config_name
        return main

    return decorate

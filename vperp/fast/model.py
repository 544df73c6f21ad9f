"""`FastModel`: `vperp.model.Model` with a cheaper transaction rollback, for the fast tier.

Every action of the model is atomic (`vperp.model._atomic`): it deep-copies the model's whole state
before running and restores it on `ModelRevert`. `copy.deepcopy` of that state costs about 0.4 ms,
more than the EVM needs for the transaction itself, and a step runs several actions (a `lever` step
tries up to 40 opens on a copy). `FastModel` runs the very same action bodies (the functions the
decorator wrapped, `__wrapped__`) under a rollback that pickles the state instead (about 0.07 ms) and
unpickles it only when the action reverts; `copy.deepcopy(fast_model)` is a pickle round trip.
Nothing else differs: same state, same code, same results and reverts.
"""
from __future__ import annotations

import functools
import pickle

from vperp import model as _model
from vperp.model import Model, ModelRevert

_ATOMIC_CODE = _model._atomic(lambda self: None).__code__  # the code object every @_atomic wrapper shares
_PROTO = pickle.HIGHEST_PROTOCOL


def _fast_atomic(raw):
    @functools.wraps(raw)
    def wrapper(self, *args, **kwargs):
        saved = pickle.dumps(self.__dict__, _PROTO)
        try:
            return raw(self, *args, **kwargs)
        except ModelRevert:
            self.__dict__.clear()
            self.__dict__.update(pickle.loads(saved))
            raise

    return wrapper


class FastModel(Model):
    """The reference model with pickle-based rollback (see the module docstring)."""

    def __deepcopy__(self, memo):
        new = object.__new__(type(self))
        new.__dict__.update(pickle.loads(pickle.dumps(self.__dict__, _PROTO)))
        return new


ATOMIC_ACTIONS = []
_seen: set[str] = set()
for _cls in Model.__mro__:  # Model and its per-contract mixins (vperp/model/): the first definition of a name wins
    for _name, _attr in list(vars(_cls).items()):
        if _name in _seen:
            continue
        _seen.add(_name)
        if getattr(_attr, "__code__", None) is _ATOMIC_CODE:
            setattr(FastModel, _name, _fast_atomic(_attr.__wrapped__))
            ATOMIC_ACTIONS.append(_name)


def fast_copy(model: Model) -> FastModel:
    """An independent FastModel with `model`'s state."""
    new = object.__new__(FastModel)
    new.__dict__.update(pickle.loads(pickle.dumps(model.__dict__, _PROTO)))
    return new

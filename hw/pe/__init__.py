"""PE kinds: a registry of the modules that implement the PE contract of :mod:`hw.pe.base`.

Each kind names its module and the two classes in it (``<Kind>Params`` and ``<Kind>PE``); the
module also exports ``golden_step``, ``golden_gemm`` and ``cost`` (and optionally
``pack_weights``), which take the params object. Modules are imported lazily, so a kind whose
module is missing only fails when it is used.
"""

import importlib
from dataclasses import dataclass

from dataflow.errors import SpecError

__all__ = ["PEKind", "PE_KINDS", "get_kind", "available_kinds", "make_params", "make_pe", "pe_cost",
           "golden_gemm", "golden_step", "pack_weights"]


@dataclass(frozen=True)
class PEKind:
    """One registered PE kind: ``name`` as written in architecture specs, where its code lives."""

    name: str
    module_name: str
    params_class: str
    pe_class: str

    @property
    def module(self):
        try:
            return importlib.import_module(self.module_name)
        except ImportError as error:
            raise SpecError(f"PE kind {self.name} is not available: {error}") from error

    @property
    def params_type(self):
        return getattr(self.module, self.params_class)

    @property
    def pe_type(self):
        return getattr(self.module, self.pe_class)

    @property
    def is_available(self):
        try:
            module = importlib.import_module(self.module_name)
        except ImportError:
            return False
        return hasattr(module, self.params_class) and hasattr(module, self.pe_class)


PE_KINDS = {
    kind.name: kind for kind in (
        PEKind("mac", "hw.pe.mac", "MacParams", "MacPE"),
        PEKind("mac-dequant", "hw.pe.mac", "MacDequantParams", "MacDequantPE"),
        PEKind("bitserial", "hw.pe.bitserial", "BitSerialParams", "BitSerialPE"),
        PEKind("lut", "hw.pe.lut", "LutParams", "LutPE"),
        PEKind("shiftadd", "hw.pe.shiftadd", "ShiftAddParams", "ShiftAddPE"),
    )
}


def get_kind(kind):
    """The :class:`PEKind` called ``kind`` (raises :class:`SpecError` naming the known kinds)."""
    try:
        return PE_KINDS[kind]
    except (KeyError, TypeError):
        raise SpecError(f"PE kind must be one of {', '.join(PE_KINDS)}, not {kind!r}") from None


def available_kinds():
    """Names of the kinds whose modules import."""
    return [name for name, kind in PE_KINDS.items() if kind.is_available]


def make_params(kind, **params):
    """Build the validated parameter object of ``kind``."""
    return get_kind(kind).params_type(**params)


def make_pe(params):
    """Build the :class:`wiring.Component` of the PE described by ``params``."""
    return get_kind(params.kind).pe_type(params)


def pe_cost(params):
    """The :class:`~hw.pe.base.PECost` of one step of the PE described by ``params``."""
    return get_kind(params.kind).module.cost(params)


def golden_step(params, a, w_codes, base, **extra):
    return get_kind(params.kind).module.golden_step(params, a, w_codes, base, **extra)


def golden_gemm(params, a, w_codes, base=None, **extra):
    return get_kind(params.kind).module.golden_gemm(params, a, w_codes, base=base, **extra)


def pack_weights(params, w_codes, **extra):
    """Payloads ``[steps, n]`` of ``w_codes[k, n]`` for this kind (kind-specific or the default)."""
    module = get_kind(params.kind).module
    if hasattr(module, "pack_weights"):
        return module.pack_weights(params, w_codes, **extra)
    from hw.pe.base import pack_weights as default_pack_weights
    return default_pack_weights(params, w_codes)

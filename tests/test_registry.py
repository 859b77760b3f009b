import pytest

from pisl.modeling import BACKBONE_REGISTRY
from pisl.utils.registry import Registry


def test_register_and_get():
    reg = Registry("THING")

    @reg.register()
    class A:
        pass

    reg.register(name="b")(int)
    assert reg.get("A") is A and reg.get("b") is int and "A" in reg


def test_unknown_name_lists_registered():
    with pytest.raises(KeyError, match="mobilenet_v2, resnet50"):
        BACKBONE_REGISTRY.get("resnet51")


def test_duplicate_name_rejected():
    reg = Registry("THING")
    reg.register(name="x")(int)
    with pytest.raises(KeyError, match="already registered"):
        reg.register(name="x")(float)

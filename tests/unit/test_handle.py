"""The lab handle contract: the real Lab and the test double both offer everything LabHandle names."""
from __future__ import annotations

import inspect

import pytest

from weblab.core.handle import LabHandle


def _members(protocol) -> set[str]:
    names = set(getattr(protocol, "__annotations__", {}))
    return names | {n for n, _ in inspect.getmembers(protocol) if not n.startswith("_")}


@pytest.mark.parametrize("impl", ["weblab.lab:Lab", "experiments.testing:FakeLab"])
def test_every_handle_member_is_offered(impl):
    module, _, name = impl.partition(":")
    cls = getattr(__import__(module, fromlist=[name]), name)
    wanted = _members(LabHandle)
    # attributes set in __init__ are checked on an instance below; methods and properties on the class
    missing = [m for m in wanted if not hasattr(cls, m) and m not in cls.__init__.__code__.co_names]
    assert not missing, f"{impl} lacks {sorted(missing)} of LabHandle"
    for m in wanted:
        ours = getattr(LabHandle, m, None)
        theirs = getattr(cls, m, None)
        if inspect.isfunction(ours):
            assert inspect.isfunction(theirs), f"{impl}.{m} must be a method"
            want = list(inspect.signature(ours).parameters)
            got = list(inspect.signature(theirs).parameters)
            assert got[:len(want)] == want, f"{impl}.{m}{inspect.signature(theirs)} != LabHandle.{m}{inspect.signature(ours)}"
        elif isinstance(ours, property):
            assert isinstance(theirs, property), f"{impl}.{m} must be a property"


def test_a_fake_lab_instance_is_a_lab_handle(tmp_path):
    from experiments.testing import FakeLab, LocalHttpServer
    lab = FakeLab("one-server", {}, LocalHttpServer(), tmp_path)
    assert isinstance(lab, LabHandle)
    assert lab.address_on("server1", "client") == lab.ip("server1")
    assert ("server1", "nginx") in lab.services() and lab.services("dns") == [("dns", "dns")]


def test_the_labs_methods_are_not_shadowed_by_its_attributes():
    """An attribute of the same name as a LabHandle method (a dict once hid Lab.services()) breaks every caller."""
    import inspect
    from weblab.lab import Lab
    init = inspect.getsource(Lab.__init__)
    for name, member in inspect.getmembers(LabHandle):
        if inspect.isfunction(member):
            assert f"self.{name} =" not in init and f"self.{name}:" not in init, f"Lab.__init__ shadows {name}()"

"""The core's boundary, checked as trio checks its exports: the fronts (the FUSE tree, the
syscall front, the CLI, the client) use only wqfs.kernel's public API, and the core imports no
front. Every file of the core names the kernel file it mirrors.

A rule enforced by reading the source (ast), so that a front reaching into key.members or
kernel.keys fails here, in review, and not later when the core's insides move.
"""
from __future__ import annotations

import ast
import pathlib
import re

import pytest

import wqfs.kernel
from wqfs.kernel import Key, Kernel, WatchQueue

PACKAGE = pathlib.Path(wqfs.kernel.__file__).resolve().parent.parent
CORE = PACKAGE / "kernel"
ABI = {PACKAGE / "abi.py", PACKAGE / "records.py"}  # the ABI's numbers and codec, shared by all
FRONTS = sorted(p for p in PACKAGE.rglob("*.py") if CORE not in p.parents and p not in ABI)
CORE_FILES = sorted(CORE.rglob("*.py"))

# What a front may read of a Key (its docstring says so); the rest of its slots are the core's.
KEY_PUBLIC = {"serial", "type", "description", "uid", "gid", "perm", "generation", "ctime_ns",
              "mtime_ns", "is_keyring", "index_key", "under_construction", "payload_size",
              "nr_members", "nr_links", "nr_subrings"}
KEY_PRIVATE = set(Key.__slots__) - KEY_PUBLIC | {"revoked", "expired", "referenced", "touch"}
# A queue's own bookkeeping: the watches on it and its pipe accounting.
QUEUE_PRIVATE = {"watches", "defunct", "accounting", "nr_accounted", "pipe_user", "creator", "max_usage",
                 "owner_uid"}
# The Kernel's state objects, each the business of the core file that owns it.
KERNEL_STATE = set(vars(Kernel(seed=1))) - {"_clock"}


def _rel(path: pathlib.Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _module_of(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_of(path) if path.name == "__init__.py" else _module_of(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def test_the_split_is_what_the_boundary_test_reads() -> None:
    assert len(FRONTS) > 15 and len(CORE_FILES) > 15
    assert PACKAGE / "fuse" / "operations.py" in FRONTS and CORE / "keys" / "keyctl.py" in CORE_FILES
    assert {"keys", "process", "gc", "watch_counts"} <= KERNEL_STATE


@pytest.mark.parametrize("path", FRONTS, ids=_rel)
def test_fronts_import_only_the_public_api(path: pathlib.Path) -> None:
    public = set(wqfs.kernel.__all__)
    for module, names, line in _imports(path):
        if module.startswith("wqfs.kernel."):
            pytest.fail(f"{_rel(path)}:{line} imports {module}: fronts import from wqfs.kernel only")
        if module == "wqfs.kernel":
            assert set(names) <= public, f"{_rel(path)}:{line}: {set(names) - public} not in wqfs.kernel.__all__"
        if module == "wqfs" and "kernel" in names:
            pytest.fail(f"{_rel(path)}:{line} imports the kernel package as a module")


@pytest.mark.parametrize("path", FRONTS, ids=_rel)
def test_fronts_do_not_read_core_internals(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        owner = node.value
        owner_name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        where = f"{_rel(path)}:{node.lineno}: .{node.attr}"
        assert node.attr not in KEY_PRIVATE, f"{where} is a Key's internal state"
        assert node.attr not in QUEUE_PRIVATE, f"{where} is a queue's internal state"
        if owner_name in ("kernel", "k"):
            assert node.attr not in KERNEL_STATE, f"{where} is the Kernel's internal state"
            assert not node.attr.startswith("_"), f"{where} is private to the core"


@pytest.mark.parametrize("path", CORE_FILES, ids=_rel)
def test_the_core_imports_no_front(path: pathlib.Path) -> None:
    for module, _, line in _imports(path):
        top = module.split(".")[0]
        assert top not in ("pyfuse3", "trio"), f"{_rel(path)}:{line} imports {module}"
        if module.startswith("wqfs."):
            assert module.startswith(("wqfs.kernel", "wqfs.abi", "wqfs.records")), \
                f"{_rel(path)}:{line} imports the front {module}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "syscalls").glob("*.py")), ids=_rel)
def test_the_syscall_front_does_not_lean_on_the_fuse_front(path: pathlib.Path) -> None:
    for module, _, line in _imports(path):
        assert not module.startswith("wqfs.fuse"), f"{_rel(path)}:{line} imports {module}"


KERNEL_SOURCE = re.compile(r"\b(security/keys/|security/(security|lsm_audit)\.c|security/smack/|kernel/watch_queue\.c|fs/(pipe|namespace|mount_notify|super)\.c|fs/|include/(uapi/)?(linux|asm-generic)/)")


@pytest.mark.parametrize("path", CORE_FILES, ids=_rel)
def test_each_core_file_names_the_kernel_file_it_mirrors(path: pathlib.Path) -> None:
    if path.name == "__init__.py" and path.parent == CORE:
        return  # the package's own index
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert KERNEL_SOURCE.search(doc), f"{_rel(path)}: its opening docstring names no kernel source file"


def test_every_export_exists() -> None:
    for name in wqfs.kernel.__all__:
        assert hasattr(wqfs.kernel, name), name


def test_kernel_operations_say_what_permission_they_need() -> None:
    """Each keyctl operation's docstring names the permission (or says it needs none)."""
    words = re.compile(r"\b(VIEW|READ|WRITE|SEARCH|LINK|SETATTR|root|authority|owner|nothing|none)\b")
    for name in ("add_key", "update", "read", "describe", "link", "unlink", "move", "clear", "revoke",
                 "invalidate", "setperm", "chown", "set_timeout", "restrict_keyring", "search",
                 "get_keyring_id", "get_security", "watch_key", "request_key", "construct_key",
                 "instantiate", "reject", "get_persistent", "join_session_keyring"):
        doc = getattr(Kernel, name).__doc__ or ""
        assert words.search(doc), f"Kernel.{name}: its docstring names no permission"
    assert isinstance(WatchQueue.__doc__, str)

"""The security module a mount runs with (`wqfs mount --lsm ...`), and the labels of its callers.

* `--lsm smack [--smack-rules FILE] [--smack-label-map FILE]`: the emulated Smack with FILE's
  rules (smackfs load2 format: "subject object access" a line); `wqfs smack-reload MOUNT`
  reads FILE again and replaces the whole rule set, or keeps the old one and says which line
  is bad.
* `--lsm python:MODULE:CLASS`: a policy of one's own, a subclass of wqfs.kernel.LSM (the hook
  interface: wqfs/kernel/security/security.py); MODULE is a dotted module name or a .py file.

A caller's label (the Cred's label, which Smack reads), first that applies:
1. for a program under `wqfs run --smack-label LABEL`, LABEL (it and its children);
2. where the host itself runs Smack, the task's own: /proc/PID/attr/smack/current (or
   attr/current);
3. the label map's entry for the caller's uid (fsuid): a file of "UID LABEL" lines, the uid a
   number or a user name, '#' comments and blank lines skipped;
4. "_", the floor label.
Without a module no label is read, and Creds carry none.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import pwd
from typing import Optional

from .kernel import LSM, Cred, KernelError, Smack, check_task_label

log = logging.getLogger("wqfs")

FLOOR = "_"


class ConfigError(Exception):
    """One line for the user: a bad --lsm, rules file or label map."""


class Security:
    """A mount's module and how its callers are labelled."""

    def __init__(self, lsm: LSM, rules_path: Optional[str] = None, label_map: Optional[dict[int, str]] = None,
                 host_smack: bool = False) -> None:
        self.lsm = lsm
        self.rules_path = rules_path
        self.label_map = label_map or {}
        self.host_smack = host_smack

    def label_of(self, tid: int, uid: int, dir_fd: Optional[int] = None) -> str:
        """The label of a caller (the order in the module docstring, less `wqfs run`'s, which
        the syscall front applies first). dir_fd: the task's open /proc/TID directory."""
        if self.host_smack:
            label = host_label(tid, dir_fd)
            if label:
                return label
        return self.label_map.get(uid, FLOOR)

    def reload(self) -> str:
        """`wqfs smack-reload`: the rules file read again and the rule set replaced whole.
        "ok ..." or why not (then the old rules stay)."""
        if not isinstance(self.lsm, Smack):
            return f"the module is {self.lsm.name}, not smack: nothing to reload"
        if self.rules_path is None:
            return "the mount was given no --smack-rules file"
        try:
            with open(self.rules_path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
            count = self.lsm.load_rules(text, self.rules_path)
        except OSError as error:
            return f"cannot read {self.rules_path}: {error.strerror}"
        except KernelError as error:
            return f"{error.detail}; the old rules stay"
        log.info("smack: %d rules loaded from %s", count, self.rules_path)
        return f"ok {count} rules from {self.rules_path}"


def host_runs_smack() -> bool:
    """Whether the host's kernel has Smack active (securityfs's list of LSMs)."""
    try:
        with open("/sys/kernel/security/lsm") as f:
            return "smack" in f.read().split(",")
    except OSError:
        return os.path.isdir("/sys/fs/smackfs") and bool(os.listdir("/sys/fs/smackfs"))


def host_label(tid: int, dir_fd: Optional[int] = None) -> Optional[str]:
    """The task's Smack label on the host (through dir_fd when given), None if unreadable."""
    for name in ("attr/smack/current", "attr/current"):
        path = name if dir_fd is not None else f"/proc/{tid}/{name}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            continue
        try:
            label = os.read(fd, 512).split(b"\0")[0].strip().decode("ascii", "replace")
        except OSError:
            label = ""
        finally:
            os.close(fd)
        if label:
            return label
    return None


def parse_label_map(text: str, source: str) -> dict[int, str]:
    """A label map: "UID LABEL" lines; ConfigError naming the first bad line."""
    labels: dict[int, str] = {}
    for number, line in enumerate(text.split("\n"), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        try:
            if len(fields) != 2:
                raise ValueError(f'a line is "UID LABEL", not {len(fields)} field(s)')
            user, label = fields
            try:
                uid = int(user) if user.isdigit() else pwd.getpwnam(user).pw_uid
            except KeyError:
                raise ValueError(f"no user {user!r}") from None
            try:
                check_task_label(label)
            except KernelError as error:
                raise ValueError(error.detail) from None
        except ValueError as error:
            raise ConfigError(f"{source}, line {number}: {error}") from None
        labels[uid] = label
    return labels


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} {path}: {error.strerror}") from None


def load_policy(spec: str) -> LSM:
    """python:MODULE:CLASS: an instance of CLASS, which must subclass LSM."""
    try:
        _, module_name, class_name = spec.split(":", 2)
    except ValueError:
        raise ConfigError(f"--lsm {spec}: a Python policy is python:MODULE:CLASS") from None
    if ":" in class_name or not module_name or not class_name:
        raise ConfigError(f"--lsm {spec}: a Python policy is python:MODULE:CLASS")
    try:
        if module_name.endswith(".py"):
            name = "wqfs_policy_" + os.path.basename(module_name)[:-3]
            loader_spec = importlib.util.spec_from_file_location(name, os.path.abspath(module_name))
            if loader_spec is None or loader_spec.loader is None:
                raise ImportError(f"cannot load {module_name}")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except (ImportError, OSError, SyntaxError) as error:
        raise ConfigError(f"--lsm {spec}: cannot load {module_name}: {error}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, LSM)):
        raise ConfigError(f"--lsm {spec}: {class_name} is not a subclass of wqfs.kernel.LSM in {module_name}")
    return cls()


def configure(lsm: Optional[str], rules: Optional[str] = None, label_map: Optional[str] = None,
              verbose: bool = False) -> Optional[Security]:
    """The Security of `wqfs mount`'s options, None for no module; ConfigError if they are bad."""
    if lsm is None:
        if rules is not None or label_map is not None:
            raise ConfigError("--smack-rules and --smack-label-map need --lsm smack")
        return None
    labels = parse_label_map(_read(label_map, "label map"), label_map) if label_map is not None else {}
    if lsm == "smack":
        module = Smack(audit=audit_line if verbose else None)
        if rules is not None:
            try:
                module.load_rules(_read(rules, "rules file"), rules)
            except KernelError as error:
                raise ConfigError(error.detail) from None
        return Security(module, rules, labels, host_runs_smack())
    if rules is not None:
        raise ConfigError("--smack-rules needs --lsm smack")
    if lsm.startswith("python:"):
        return Security(load_policy(lsm), None, labels, host_runs_smack())
    raise ConfigError(f"--lsm {lsm}: the modules are smack and python:MODULE:CLASS")


def audit_line(head: str, cred: Optional[Cred], tail: str) -> None:
    """A Smack denial, logged (with -v) as the audit record's text: smack_log_callback's part,
    lsm_audit.c's " pid=N comm=..." of the task it was made for, the object's fields."""
    pid = cred.process[0] if cred is not None and isinstance(cred.process, tuple) and cred.process else 0
    comm = ""
    if pid:
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                comm = f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")
        except OSError:
            pass
    log.info("%s pid=%d comm=%s%s", head, pid, Smack.untrusted_string(comm), tail)


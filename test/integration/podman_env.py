"""
A private podman for the integration tests: its own configuration, storage and image, so
that a test can run the fixture server in a real container without a registry, without
touching the machine's containers, images or settings, and leaving nothing behind.

It installs nothing.  `unavailable()` says why podman cannot be used here (no podman or
runc binary, not root), and tests skip with that reason.  `PodmanEnv.setup()`:

- writes a containers.conf (runtime runc, cgroup manager cgroupfs, no default ulimits,
  events to a file, no network namespace by default, logs to files) and a storage.conf
  (driver vfs, graph and run roots in a temporary directory), and points podman at them
  through CONTAINERS_CONF and CONTAINERS_STORAGE_CONF in `env` (pass it to every podman
  command, and to mcpmux when it is to reach these containers);
- builds the image offline: a tarball with the fixture binary at /mcp-fixture and the
  shared libraries `ldd` lists for it, imported with `podman import`.

`cleanup()` removes every container carrying the environment's label (podman rm -f), the
image, and the temporary directory; it runs whatever happened before, and may be called
twice.  Containers a test starts must carry `label()` (`--label mcpmux.test=TAG`).

Why these settings: on the machines here crun and systemd cgroups do not work, and the
default ulimits cannot be applied; vfs needs no kernel support (overlay may be
unavailable inside a VM or container), and a private storage root keeps the test's
image and containers out of the machine's own.
"""

import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid

IMAGE_REPO = "localhost/mcpmux-test-fixture"
LABEL = "mcpmux.test"


def unavailable():
    """Why podman cannot be used for the tests here, or None."""
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return "%s is not installed (Debian: apt-get install podman runc)" % tool
    if os.geteuid() != 0:
        return "podman tests run as root (rootless podman needs subordinate ids set up)"
    return None


def shared_libraries(binary):
    """Absolute paths of the libraries `ldd BINARY` lists, the loader included."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


class PodmanEnv:
    def __init__(self, fixture):
        self.fixture = fixture
        self.tag = uuid.uuid4().hex[:12]
        self.image = "%s:%s" % (IMAGE_REPO, self.tag)
        self.dir = None
        self.env = None
        self.image_built = False

    def label(self):
        return "%s=%s" % (LABEL, self.tag)

    def podman(self, *args, check=True, timeout=120, capture=True):
        return subprocess.run(["podman"] + list(args), env=self.env, timeout=timeout,
                              capture_output=capture, text=True, check=check)

    def setup(self, base_env=None):
        self.dir = tempfile.mkdtemp(prefix="mcpmux-podman-")
        root = os.path.join(self.dir, "storage")
        run = os.path.join(self.dir, "run")
        tmp = os.path.join(self.dir, "tmp")
        for d in (root, run, tmp):
            os.mkdir(d, 0o700)
        conf = os.path.join(self.dir, "containers.conf")
        with open(conf, "w") as f:
            f.write('[containers]\n'
                    'default_ulimits = []\n'
                    'netns = "none"\n'
                    'log_driver = "k8s-file"\n'
                    '\n'
                    '[engine]\n'
                    'runtime = "runc"\n'
                    'cgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n'
                    'tmp_dir = "%s"\n' % tmp)
        storage = os.path.join(self.dir, "storage.conf")
        with open(storage, "w") as f:
            f.write('[storage]\n'
                    'driver = "vfs"\n'
                    'graphroot = "%s"\n'
                    'runroot = "%s"\n' % (root, run))
        self.env = dict(base_env if base_env is not None else os.environ)
        self.env["CONTAINERS_CONF"] = conf
        self.env["CONTAINERS_STORAGE_CONF"] = storage
        self.build_image()

    def build_image(self):
        """The fixture and its libraries in a tarball, imported: no registry involved."""
        tarball = os.path.join(self.dir, "rootfs.tar")
        with tarfile.open(tarball, "w") as tar:
            tar.add(os.path.realpath(self.fixture), arcname="mcp-fixture")
            seen = set()
            for lib in shared_libraries(self.fixture):
                if lib in seen:
                    continue
                seen.add(lib)
                # The real file under the path the loader looks for (no symlinks to follow).
                tar.add(os.path.realpath(lib), arcname=lib.lstrip("/"))
        self.podman("import", "--change", "CMD=/mcp-fixture", tarball, self.image)
        self.image_built = True
        os.unlink(tarball)

    def containers(self, *filters):
        """IDs of this environment's containers (all states), with extra label filters."""
        args = ["ps", "-a", "-q", "--no-trunc", "--filter", "label=" + self.label()]
        for f in filters:
            args += ["--filter", f]
        return self.podman(*args).stdout.split()

    def run_argv(self, *args):
        """podman run -i --rm --label mcpmux.test=TAG [ARGS...] (add the image and command)."""
        return ["podman", "run", "-i", "--rm", "--label", self.label()] + list(args)

    def cleanup(self):
        if self.env is None:
            return
        try:
            ids = self.containers()
            if ids:
                self.podman("rm", "-f", "-t", "0", *ids, check=False)
            if self.image_built:
                self.podman("rmi", "-f", self.image, check=False)
                self.image_built = False
        finally:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None
            self.env = None


class PodmanCase:
    """Mixin for a test case class that runs real containers (put it before the Case base):
    one image for the class, the engine's settings in each test's environment, and every
    container the test left removed after it (returned by remove_leftovers())."""

    FIXTURE = None  # the fixture binary to put in the image (set by the test module)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pod = PodmanEnv(cls.FIXTURE)
        try:
            cls.pod.setup()
        except BaseException:
            cls.pod.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pod.cleanup()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.env.update({k: v for k, v in self.pod.env.items()
                         if k.startswith("CONTAINERS_")})

    def remove_leftovers(self):
        """Remove the containers still there; their ids."""
        ids = self.pod.containers()
        if ids:
            self.pod.podman("rm", "-f", "-t", "0", *ids, check=False)
        return ids

    def tearDown(self):
        try:
            self.remove_leftovers()
        finally:
            super().tearDown()

"""containerd's own client integration tests, run offline against any daemon.

containerd v1.6.20's ``integration/client`` tests are extracted at run time
(nothing of containerd's lives in this repository), compiled with Debian's Go
over Debian's containerd sources, and pointed with ``-no-daemon -address`` at
a daemon: a private real containerd, berthd's embedded default, or a socket.
Their hard-coded public image references are answered by stand-in images
built here from busybox-static and served by a local ``docker-registry``; the
one Go file we add to the test package (``standin_registry_test.go``) sends
the tests' registry traffic there.  ``tests/integration/containerd-client/run``
is the command.
"""

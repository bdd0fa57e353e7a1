import sys

from tests.integration.containerd_client.main import main

sys.exit(main())

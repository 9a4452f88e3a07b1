# Stand-in for ansible-test's downloaded get-pip script (installed by scripts/test.sh into
# ~/.ansible/test/cache/): runs pip from a local wheel to install the packages it is given.
import glob
import sys

wheel = glob.glob('@WHEEL_DIR@/pip-@VERSION@-*.whl')[0]
sys.path.insert(0, wheel)
from pip._internal.cli.main import main  # noqa: E402  pylint: disable=wrong-import-position

args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
sys.exit(main(['install'] + args))

package registrytest

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the registry process die with the test process, so a
// killed test run leaves no registry behind.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

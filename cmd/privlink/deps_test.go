package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCLILinksNoDaemon keeps the CLI small: it talks to privlinkd through
// the API and shares only internal/names with it, so it must not link the
// daemon, the controllers, the fabric or the providers.
func TestCLILinksNoDaemon(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, banned := range []string{"/internal/daemon", "/internal/controller", "/internal/fabric", "/internal/provider/", "/internal/pgserver", "/internal/identity"} {
			if strings.Contains(pkg, "github.com/privlink/privlink"+banned) {
				t.Errorf("the CLI links %s", pkg)
			}
		}
	}
}

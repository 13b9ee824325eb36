package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/privlink/privlink/internal/azconfig"
)

// TestAzSetupQuoting: every line az-setup prints reaches az with the
// credentials' values as single arguments, whatever characters they hold
// (a shell runs the lines: README's eval, the e2e test's bash -c).
func TestAzSetupQuoting(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	creds := azconfig.Credentials{
		TenantID: "t-1", ClientID: "c 1", ClientSecret: `it's a "secret" $HOME;$(rm -rf x)` + "`x`\\",
		ARMEndpoint: "https://127.0.0.1:8443/", CAFile: "/tmp/my ca.pem",
	}
	for _, args := range [][]string{nil, {"--adfs"}} {
		var out strings.Builder
		if err := azSetupCmd(creds, "creds.json", args, &out); err != nil {
			t.Fatal(err)
		}
		var login []string
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(line, "#") || line == "" {
				continue
			}
			// The shell splits the line; print each word az would get.
			cmd := exec.Command("bash", "-c", "az() { printf '%s\\0' \"$@\"; }; export() { printf '%s\\0' \"$@\"; }; "+line)
			b, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: bash -c %q: %v", args, line, err)
			}
			words := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
			switch {
			case strings.HasPrefix(line, "export "):
				if words[0] != "REQUESTS_CA_BUNDLE="+creds.CAFile {
					t.Errorf("%v: %q exports %q", args, line, words)
				}
			case words[0] == "login":
				login = words
			case words[0] == "cloud" && words[1] == "register":
				if !slices.Contains(words, "https://127.0.0.1:8443") {
					t.Errorf("%v: cloud register %q", args, words)
				}
			}
		}
		want := []string{"login", "--service-principal", "-u", creds.ClientID, "-p", creds.ClientSecret, "--tenant", creds.TenantID,
			"--output", "none", "--only-show-errors"}
		if !slices.Equal(login, want) {
			t.Errorf("%v: az login gets %q, want %q", args, login, want)
		}
	}
}

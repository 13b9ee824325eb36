// Package names holds what privlinkd and the privlink CLI must agree on
// without the CLI linking the daemon: the names of the network namespaces
// of resources, and the runtime file a running privlinkd leaves in its
// data directory. internal/fabric names its namespaces with Namespace;
// the CLI finds them with the same function.
package names

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/privlink/privlink/internal/arm"
)

// Kind is the kind of a namespace: the part of its name after the prefix.
type Kind string

// The kinds of namespaces.
const (
	KindNetwork      Kind = "vnet" // a virtual network's router
	KindNIC          Kind = "nic"  // a network interface in a virtual network
	KindInternet     Kind = "inet" // the emulated internet's router (one per daemon)
	KindInternetHost Kind = "ih"   // a host on the emulated internet
	KindService      Kind = "svc"  // a service instance (a PostgreSQL server)
	KindVPNGateway   Kind = "vgw"  // a virtual network gateway (its charon)
	// A simulated on-premises site (`privlink site create`): its router,
	// its VPN device on the emulated internet, and its hosts (id
	// "SITE.HOST").
	KindSite       Kind = "site"
	KindSiteDevice Kind = "sdev"
	KindSiteHost   Kind = "shost"
)

// Namespace is the name of the namespace of the given kind and id under
// prefix (a daemon's --netns-prefix), as `ip netns exec` knows it. For
// KindInternet id is ignored; for KindInternetHost it is the host's
// address; for the others, Key of the resource.
func Namespace(prefix string, kind Kind, id string) string {
	if kind == KindInternet {
		return prefix + string(KindInternet)
	}
	return prefix + string(kind) + "-" + id
}

// NetnsDir is where iproute2 (and so privlinkd) keeps named namespaces.
const NetnsDir = "/run/netns"

// Path is the file of the named namespace name.
func Path(name string) string { return filepath.Join(NetnsDir, name) }

// Key is the short key of a resource in namespace and link names: a hash
// of its lower-cased ARM ID, so names stay short and stable across
// restarts.
func Key(id arm.ResourceID) string {
	sum := sha256.Sum256([]byte(strings.ToLower(id.String())))
	return hex.EncodeToString(sum[:8])
}

// RuntimeFile is the name, in the data directory, of the file a running
// privlinkd writes so that the CLI finds its namespaces and API.
const RuntimeFile = "runtime.json"

// Runtime is the content of RuntimeFile.
type Runtime struct {
	NetnsPrefix string `json:"netnsPrefix"`
	ARMEndpoint string `json:"armEndpoint"`
	PID         int    `json:"pid"`
}

// WriteRuntime writes rt as dataDir's runtime file.
func WriteRuntime(dataDir string, rt Runtime) error {
	b, err := json.MarshalIndent(rt, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dataDir, RuntimeFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", RuntimeFile, err)
	}
	return nil
}

// ReadRuntime reads dataDir's runtime file.
func ReadRuntime(dataDir string) (Runtime, error) {
	var rt Runtime
	b, err := os.ReadFile(filepath.Join(dataDir, RuntimeFile))
	if err != nil {
		return rt, fmt.Errorf("read privlinkd's runtime file: %w (is privlinkd running with --data-dir %s?)", err, dataDir)
	}
	if err := json.Unmarshal(b, &rt); err != nil {
		return rt, fmt.Errorf("parse %s: %w", RuntimeFile, err)
	}
	return rt, nil
}

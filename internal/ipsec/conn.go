package ipsec

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strongswan/govici/vici"
)

// Conn is one site-to-site tunnel a gateway's charon keeps: IKEv2 with a
// pre-shared key between the two public addresses, one child SA carrying
// LocalTS <-> RemoteTS, always UDP-encapsulated.
type Conn struct {
	// Name names the IKE SA and its child SA in charon (and nothing else).
	Name string
	// LocalAddr and RemoteAddr are the two gateways' public addresses; they
	// are also the IKE identities.
	LocalAddr, RemoteAddr netip.Addr
	// LocalTS and RemoteTS are the address spaces on each side.
	LocalTS, RemoteTS []netip.Prefix
	// PSK is the pre-shared key (the connection's sharedKey).
	PSK string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks c before it reaches charon.
func (c Conn) Validate() error {
	switch {
	case !nameRE.MatchString(c.Name):
		return fmt.Errorf("ipsec: connection name %q: want 1-64 of [A-Za-z0-9_-]", c.Name)
	case !c.LocalAddr.Is4() || !c.RemoteAddr.Is4() || c.LocalAddr == c.RemoteAddr:
		return fmt.Errorf("ipsec: connection %s: want two distinct IPv4 gateway addresses, have %v and %v", c.Name, c.LocalAddr, c.RemoteAddr)
	case len(c.LocalTS) == 0 || len(c.RemoteTS) == 0:
		return fmt.Errorf("ipsec: connection %s: want address spaces on both sides", c.Name)
	case c.PSK == "":
		return fmt.Errorf("ipsec: connection %s: empty pre-shared key", c.Name)
	}
	return nil
}

// Status is a tunnel's state as charon reports it.
type Status string

// The statuses, named as Azure's connectionStatus values.
const (
	// Connected: the IKE SA is established and its child SA installed.
	Connected Status = "Connected"
	// Connecting: an IKE exchange is under way.
	Connecting Status = "Connecting"
	// NotConnected: no IKE SA (never set up, failed authentication, or
	// the peer is gone).
	NotConnected Status = "NotConnected"
)

// State is a tunnel's status and the bytes its child SAs carried (plain
// text bytes, as charon counts them).
type State struct {
	Status   Status
	BytesIn  uint64
	BytesOut uint64
}

func prefixes(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Masked().String()
	}
	return out
}

func section(kv map[string]any) (*vici.Message, error) {
	m := vici.NewMessage()
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := m.Set(k, kv[k]); err != nil {
			return nil, fmt.Errorf("ipsec: vici %s: %w", k, err)
		}
	}
	return m, nil
}

// Load loads (or replaces) c and its key in charon and starts it. Charon
// keeps trying while the peer does not answer; a failed authentication
// leaves the tunnel NotConnected until the next Load or Initiate.
func (d *Daemon) Load(ctx context.Context, c Conn) error {
	if err := c.Validate(); err != nil {
		return err
	}
	child, err := section(map[string]any{
		"local_ts":      prefixes(c.LocalTS),
		"remote_ts":     prefixes(c.RemoteTS),
		"esp_proposals": espProposals,
		"start_action":  "start",
		"dpd_action":    "restart",
		"close_action":  "none",
	})
	if err != nil {
		return err
	}
	children, err := section(map[string]any{c.Name: child})
	if err != nil {
		return err
	}
	local, err := section(map[string]any{"auth": "psk", "id": c.LocalAddr.String()})
	if err != nil {
		return err
	}
	remote, err := section(map[string]any{"auth": "psk", "id": c.RemoteAddr.String()})
	if err != nil {
		return err
	}
	ike, err := section(map[string]any{
		"version":      "2",
		"local_addrs":  []string{c.LocalAddr.String()},
		"remote_addrs": []string{c.RemoteAddr.String()},
		"encap":        "yes",
		"proposals":    ikeProposals,
		"keyingtries":  "0",
		"unique":       "never",
		"dpd_delay":    "2s",
		"local":        local,
		"remote":       remote,
		"children":     children,
	})
	if err != nil {
		return err
	}
	conn, err := section(map[string]any{c.Name: ike})
	if err != nil {
		return err
	}
	key, err := section(map[string]any{
		"id":     c.Name,
		"type":   "IKE",
		"data":   c.PSK,
		"owners": []string{c.LocalAddr.String(), c.RemoteAddr.String()},
	})
	if err != nil {
		return err
	}
	if _, err := d.call(ctx, "load-shared", key); err != nil {
		return err
	}
	if _, err := d.call(ctx, "load-conn", conn); err != nil {
		return err
	}
	return d.Initiate(ctx, c.Name)
}

// Initiate starts the named tunnel's IKE SA unless one exists, without
// waiting for it.
func (d *Daemon) Initiate(ctx context.Context, name string) error {
	st, err := d.State(ctx, name)
	if err != nil {
		return err
	}
	if st.Status != NotConnected {
		return nil
	}
	m, err := section(map[string]any{"child": name, "ike": name, "timeout": "-1"})
	if err != nil {
		return err
	}
	_, err = d.call(ctx, "initiate", m)
	return err
}

// Unload removes the named tunnel: its configuration, its key, and its
// SAs at once (no delete exchange awaited), so traffic stops now.
func (d *Daemon) Unload(ctx context.Context, name string) error {
	var errs []error
	m, err := section(map[string]any{"name": name})
	if err != nil {
		return err
	}
	if _, err := d.call(ctx, "unload-conn", m); err != nil && !notFound(err) {
		errs = append(errs, err)
	}
	t, err := section(map[string]any{"ike": name, "force": "yes", "timeout": "-1"})
	if err != nil {
		return err
	}
	if err := d.terminate(ctx, t); err != nil {
		errs = append(errs, err)
	}
	k, err := section(map[string]any{"id": name})
	if err != nil {
		return err
	}
	if _, err := d.call(ctx, "unload-shared", k); err != nil && !notFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// terminate ends the SAs that t selects. charon answers "not all
// matching SAs could be terminated" when one of them is already being
// deleted (a duplicate initiation or a rekey ending at the same moment);
// asking again once that one is gone finds only what is left, so it
// retries a few times, briefly, before it gives up.
func (d *Daemon) terminate(ctx context.Context, t *vici.Message) error {
	var err error
	for range 10 {
		if _, err = d.call(ctx, "terminate", t); err == nil || notFound(err) {
			return nil
		}
		if !strings.Contains(err.Error(), "not all matching SAs") {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return err
}

// notFound reports whether charon refused a command because there was
// nothing to act on.
func notFound(err error) bool {
	s := err.Error()
	for _, w := range []string{"not found", "no matching", "no IKE_SA", "not exist"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// Names lists the tunnels loaded in charon.
func (d *Daemon) Names(ctx context.Context) ([]string, error) {
	m, err := d.call(ctx, "get-conns", nil)
	if err != nil {
		return nil, err
	}
	conns, _ := m.Get("conns").([]string)
	slices.Sort(conns)
	return conns, nil
}

// State reports the named tunnel's status and byte counters from its IKE
// and child SAs.
func (d *Daemon) State(ctx context.Context, name string) (State, error) {
	s, err := d.session()
	if err != nil {
		return State{}, err
	}
	defer s.Close()
	in, err := section(map[string]any{"ike": name})
	if err != nil {
		return State{}, err
	}
	st := State{Status: NotConnected}
	for ev, err := range s.CallStreaming(ctx, "list-sas", "list-sa", in) {
		if err != nil {
			return State{}, fmt.Errorf("ipsec: list-sas in %s: %w", d.netns, err)
		}
		ike, _ := ev.Get(name).(*vici.Message)
		if ike == nil {
			continue
		}
		st = merge(st, ike)
	}
	return st, nil
}

// merge folds one IKE SA of the tunnel into st: Connected wins over
// Connecting (a rekey or a duplicate initiation can show both).
func merge(st State, ike *vici.Message) State {
	state, _ := ike.Get("state").(string)
	children, _ := ike.Get("child-sas").(*vici.Message)
	installed := false
	if children != nil {
		for _, k := range children.Keys() {
			c, _ := children.Get(k).(*vici.Message)
			if c == nil {
				continue
			}
			if cs, _ := c.Get("state").(string); cs == "INSTALLED" {
				installed = true
			}
			st.BytesIn += counter(c, "bytes-in")
			st.BytesOut += counter(c, "bytes-out")
		}
	}
	switch {
	case state == "ESTABLISHED" && installed:
		st.Status = Connected
	case st.Status != Connected && (state == "CONNECTING" || state == "ESTABLISHED" || state == "REKEYING"):
		st.Status = Connecting
	}
	return st
}

func counter(m *vici.Message, key string) uint64 {
	s, _ := m.Get(key).(string)
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

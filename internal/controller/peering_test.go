package controller

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/privlink/privlink/internal/arm"
)

// TestPeeringItems: a peering document's change reconciles both of its
// networks, in the network and the policy controllers alike (its state,
// and so both routers' peers and routes, derive from both sides); its
// deletion, which names only the local side, every network.
func TestPeeringItems(t *testing.T) {
	const (
		hub   = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/hub"
		spoke = "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/other/providers/Microsoft.Network/virtualNetworks/spoke"
	)
	id, err := arm.ParseID(hub + "/virtualNetworkPeerings/to-spoke")
	if err != nil {
		t.Fatal(err)
	}
	key := arm.DocKey(id)
	doc, _ := json.Marshal(map[string]any{"id": id.String(), "name": "to-spoke",
		"properties": map[string]any{"remoteVirtualNetwork": map[string]any{"id": spoke}}})
	n := &Network{}
	p := &Policy{}
	for _, c := range []struct {
		what  string
		items func(string, []byte) []string
		both  []string
		all   string
	}{
		{"network", n.items, []string{itemNetwork + hub, itemNetwork + spoke}, itemAllNetworks},
		{"policy", p.items, []string{hub, spoke}, itemAllPolicies},
	} {
		got := c.items(key, doc)
		for _, want := range c.both {
			if !slices.ContainsFunc(got, func(s string) bool { return strings.EqualFold(s, want) }) {
				t.Errorf("%s controller: a peering's change enqueues %v, want %s among them", c.what, got, want)
			}
		}
		if got := c.items(key, nil); !slices.Equal(got, []string{c.all}) {
			t.Errorf("%s controller: a peering's deletion enqueues %v, want %v", c.what, got, c.all)
		}
	}
}

package arm

import (
	"strings"
	"testing"
)

// idSeeds are resource IDs and request paths of every shape the API
// serves: scopes, collections, nested children, extension resources,
// actions, operation status URLs, odd casing and escaping.
var idSeeds = []string{
	"/subscriptions/00000000-0000-0000-0000-00000000a001",
	"/subscriptions/s1/resourceGroups",
	"/subscriptions/s1/resourceGroups/rg",
	"/subscriptions/s1/resources",
	"/subscriptions/s1/resourceGroups/rg/resources",
	"/subscriptions/s1/providers/Microsoft.Network",
	"/subscriptions/s1/providers/Microsoft.Network/register",
	"/subscriptions/s1/providers/Microsoft.Network/locations/westeurope/operations/0f1e",
	"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks",
	"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v",
	"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/default",
	"/SUBSCRIPTIONS/s1/RESOURCEGROUPS/Rg/PROVIDERS/microsoft.network/VIRTUALNETWORKS/V/SUBNETS",
	"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/privateDnsZones/privatelink.postgres.database.azure.com/A/@",
	"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/srv/restart",
	"/subscriptions/s1/providers/Microsoft.DBforPostgreSQL/locations/westeurope/checkNameAvailability",
	"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/7b0e",
	"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/providers/Microsoft.Authorization/roleAssignments/7b0e",
	"/subscriptions/s1/providers/Microsoft.Authorization/roleDefinitions",
	"subscriptions/s1/resourceGroups/my%20group/",
	"/subscriptions/s1/resourceGroups/a%2Fb",
	"/subscriptions/s1/resourceGroups/a%252Fb",
	"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Resources/resourceGroups",
	"/subscriptions/s1/resourceGroups/rg/providers/providers/providers/providers",
	"//subscriptions//s1",
	"/subscriptions/s1/resourceGroups/rg/providers",
	"/subscriptions/%zz",
}

// FuzzParseID: ParseID never panics, and an ID it accepts renders (String)
// to a path that parses back to an equal ID with the same rendering:
// IDs go through String into store keys, response bodies and references,
// and are parsed again from there.
func FuzzParseID(f *testing.F) {
	for _, s := range idSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		id, err := ParseID(path)
		if err != nil {
			return
		}
		s := id.String()
		back, err := ParseID(s)
		if err != nil {
			t.Fatalf("ParseID(%q) = %#v, whose String %q does not parse: %v", path, id, s, err)
		}
		if !back.Equal(id) || back.String() != s {
			t.Fatalf("ParseID(%q) = %#v renders %q, which parses to %#v rendering %q", path, id, s, back, back.String())
		}
		if back.IsCollection() != id.IsCollection() || !strings.EqualFold(back.Type(), id.Type()) || back.Name() != id.Name() {
			t.Fatalf("ParseID(%q): type %q name %q collection %v; after a round trip through %q: %q %q %v",
				path, id.Type(), id.Name(), id.IsCollection(), s, back.Type(), back.Name(), back.IsCollection())
		}
		// Parent and Collection stay parseable.
		for _, rel := range []ResourceID{id.Parent(), id.Collection()} {
			if _, err := ParseID(rel.String()); err != nil && rel.Subscription != "" {
				t.Fatalf("ParseID(%q): a relative %q does not parse: %v", path, rel.String(), err)
			}
		}
	})
}

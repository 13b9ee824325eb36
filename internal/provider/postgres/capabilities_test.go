package postgres

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
)

// TestCapabilities: the capabilities of a location, read with the SDK's
// CapabilitiesByLocationClient, offer only what a create accepts: every
// compute size of every tier passes the SKU validation with its tier,
// every storage size with each of its performance tiers passes the storage
// validation, and the versions are the installed ones; a server created
// from the offer succeeds. A server's capabilities offer its own version
// only. Earlier api-versions (az 2.45's) get the older shape, with the
// same SKUs under each version. Other methods are refused.
func TestCapabilities(t *testing.T) {
	e := newEnv(t, WithVersions([]string{"15.18", "16.4"}))
	e.group("rg")
	f, err := pg.NewClientFactory(sub, e.srv.Cred, e.srv.Options)
	if err != nil {
		t.Fatal(err)
	}
	capa := oneCapability(t, e, f.NewCapabilitiesByLocationClient().NewListPager("westeurope", nil),
		func(r pg.CapabilitiesByLocationClientListResponse) []*pg.Capability { return r.Value })

	var versions []string
	for _, v := range capa.SupportedServerVersions {
		versions = append(versions, *v.Name)
	}
	if !slices.Equal(versions, []string{"15", "16"}) {
		t.Errorf("versions = %v, want the installed 15 and 16", versions)
	}
	var tiers []string
	skus := 0
	for _, ed := range capa.SupportedServerEditions {
		tier := *ed.Name
		tiers = append(tiers, tier)
		if _, err := buildSKU(&skuIn{Name: ed.DefaultSKUName, Tier: &tier}, nil); err != nil {
			t.Errorf("%s: default SKU %s refused: %v", tier, *ed.DefaultSKUName, err)
		}
		for _, s := range ed.SupportedServerSKUs {
			skus++
			if _, err := buildSKU(&skuIn{Name: s.Name, Tier: &tier}, nil); err != nil {
				t.Errorf("%s: offered SKU %s refused: %v", tier, *s.Name, err)
			}
		}
		var disk *pg.StorageEditionCapability
		for _, se := range ed.SupportedStorageEditions {
			if *se.Name == "ManagedDisk" {
				disk = se
			}
		}
		if disk == nil || len(disk.SupportedStorageMb) == 0 {
			t.Fatalf("%s: no ManagedDisk storage offered", tier)
		}
		for _, size := range disk.SupportedStorageMb {
			gib := int32(*size.StorageSizeMb / 1024)
			for _, st := range size.SupportedIopsTiers {
				if _, err := buildStorage(&storageIn{StorageSizeGB: &gib, Tier: st.Name}, nil); err != nil {
					t.Errorf("%s: offered storage %d GiB at %s refused: %v", tier, gib, *st.Name, err)
				}
			}
		}
		// A create from the offer: its first SKU, its largest size.
		largest := int32(*disk.SupportedStorageMb[len(disk.SupportedStorageMb)-1].StorageSizeMb / 1024)
		body := serverBody()
		body.SKU = &pg.SKU{Name: ed.SupportedServerSKUs[0].Name, Tier: to.Ptr(pg.SKUTier(tier))}
		body.Properties.Storage = &pg.Storage{StorageSizeGB: &largest}
		body.Properties.Version = to.Ptr(pg.PostgresMajorVersion(versions[len(versions)-1]))
		if _, err := e.create("rg", fmt.Sprintf("offer-%d", len(tiers)), body); err != nil {
			t.Errorf("%s: a server from the offer: %v", tier, err)
		}
	}
	if !slices.Equal(tiers, skuTiers) || skus < 3*8 {
		t.Errorf("tiers %v with %d SKUs, want %v with all their sizes", tiers, skus, skuTiers)
	}

	e.mustCreate("rg", "srv")
	own := oneCapability(t, e, f.NewCapabilitiesByServerClient().NewListPager("rg", "srv", nil),
		func(r pg.CapabilitiesByServerClientListResponse) []*pg.Capability { return r.Value })
	if len(own.SupportedServerVersions) != 1 || *own.SupportedServerVersions[0].Name != "15" {
		t.Errorf("a version 15 server's capabilities offer versions %v", own.SupportedServerVersions)
	}

	// az 2.45's api-version: editions, each with its versions and their SKUs.
	path := "/subscriptions/" + sub + "/providers/Microsoft.DBforPostgreSQL/locations/westeurope/capabilities"
	r := e.raw(http.MethodGet, path+"?api-version=2022-12-01", nil)
	var legacy struct {
		Value []struct {
			SupportedFlexibleServerEditions []struct {
				Name                    string
				SupportedServerVersions []struct {
					Name            string
					SupportedVcores []struct{ Name string }
				}
			}
		}
	}
	if err := json.Unmarshal(r.body, &legacy); r.status != http.StatusOK || err != nil || len(legacy.Value) != 1 {
		t.Fatalf("capabilities at 2022-12-01: %d %v %s", r.status, err, r.body)
	}
	for i, ed := range legacy.Value[0].SupportedFlexibleServerEditions {
		if ed.Name != skuTiers[i] || len(ed.SupportedServerVersions) != 2 ||
			len(ed.SupportedServerVersions[1].SupportedVcores) != len(capa.SupportedServerEditions[i].SupportedServerSKUs) {
			t.Errorf("legacy edition %d: %+v", i, ed)
		}
	}
	if r := e.raw(http.MethodPost, path, map[string]any{}); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST capabilities: %d %s", r.status, r.body)
	}
	if r := e.raw(http.MethodGet, "/subscriptions/"+sub+"/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/none/capabilities", nil); r.status != http.StatusNotFound {
		t.Errorf("capabilities of a missing server: %d %s", r.status, r.body)
	}
}

// oneCapability reads every page of a capabilities pager and returns its
// one document.
func oneCapability[T any](t *testing.T, e *env, p *runtime.Pager[T], values func(T) []*pg.Capability) *pg.Capability {
	t.Helper()
	var all []*pg.Capability
	for p.More() {
		page, err := p.NextPage(e.ctx)
		if err != nil {
			t.Fatalf("capabilities: %v", err)
		}
		all = append(all, values(page)...)
	}
	if len(all) != 1 {
		t.Fatalf("capabilities: %d documents, want 1", len(all))
	}
	return all[0]
}

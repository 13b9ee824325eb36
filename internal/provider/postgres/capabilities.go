package postgres

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/privlink/privlink/internal/arm"
)

// Capabilities: what privlink offers in a location (GET
// /subscriptions/{s}/providers/Microsoft.DBforPostgreSQL/locations/{l}/capabilities)
// and to one server (GET …/flexibleServers/{name}/capabilities), which the
// az CLI reads before it creates or resizes a server. Everything in the
// answer comes from the tables validate.go accepts (compute sizes by tier,
// storage sizes and their performance tiers, Premium SSD v2's limits,
// availability zones) and from the PostgreSQL versions installed, so a
// client that picks from it is never refused; what privlink refuses
// (high availability, geo-redundant backup) is reported as not supported.
//
// The document has two shapes: the one api-versions from 2023-03-01-preview
// on answer (FlexibleServerCapability: editions with their SKUs, then
// versions), and the one of earlier versions, which az 2.45 reads
// (CapabilityProperties: editions with their versions, each with its
// SKUs). Both are rendered from one offer.

// capabilitiesShapeSince is the first api-version of the current shape.
const capabilitiesShapeSince = "2023-03-01-preview"

// offer is what privlink accepts, in the terms of the capabilities.
type offer struct {
	versions []string            // PostgreSQL majors, ascending
	upgrades map[string][]string // major → majors it can be upgraded to
	editions []editionOffer
}

type editionOffer struct {
	tier       string
	defaultSKU string
	skus       []skuOffer
}

type skuOffer struct {
	name   string
	vCores int64
	memGiB int64
}

// zones are the availability zones a server may ask for (validate.go).
var zones = []string{"1", "2", "3"}

// skuSuffixes are the D and E series listed for each vCore count: the
// current generations Azure offers (validate.go accepts any of its
// a?d?s_vN names whose vCores exist).
var skuSuffixes = []struct {
	suffix   string
	maxCores int64 // 128 and 192 vCores exist in v6 only
}{{"ds_v5", 96}, {"ads_v5", 96}, {"ds_v6", 192}}

// theOffer lists the compute sizes of every tier.
func (p *Provider) theOffer() offer {
	o := offer{versions: slices.Clone(p.versions), upgrades: map[string][]string{}}
	for _, v := range p.versions {
		o.upgrades[v] = p.upgradeTargets(v)
	}
	for _, tier := range skuTiers {
		e := editionOffer{tier: tier, defaultSKU: defaultSKUName[tier]}
		switch tier {
		case "Burstable":
			sizes := slices.Collect(maps.Keys(burstableMemoryGiB))
			slices.SortFunc(sizes, func(a, b string) int { return cmp.Compare(burstableMemoryGiB[a], burstableMemoryGiB[b]) })
			for _, size := range sizes {
				e.skus = append(e.skus, skuOffer{name: "Standard_" + strings.ToUpper(size[:1]) + size[1:],
					vCores: burstableVCores[size], memGiB: burstableMemoryGiB[size]})
			}
		default:
			series, cores := "D", dVCores
			if tier == "MemoryOptimized" {
				series, cores = "E", eVCores
			}
			for _, s := range skuSuffixes {
				for _, n := range cores {
					if n <= s.maxCores {
						name := fmt.Sprintf("Standard_%s%d%s", series, n, s.suffix)
						mem, _ := skuMemoryGiB(name)
						e.skus = append(e.skus, skuOffer{name: name, vCores: n, memGiB: mem})
					}
				}
			}
		}
		o.editions = append(o.editions, e)
	}
	return o
}

// burstableVCores are the vCores of the Burstable sizes.
var burstableVCores = map[string]int64{"b1ms": 1, "b2s": 2, "b2ms": 2, "b4ms": 4, "b8ms": 8, "b12ms": 12, "b16ms": 16, "b20ms": 20}

// storageIOPS is the IOPS of a Premium SSD size at its own tier.
func storageIOPS(gib int32) int32 { return tierIOPS[baselineTier[gib]] }

// tiersFor lists the performance tiers a size takes (validate.go's fits).
func tiersFor(gib int32) []map[string]any {
	maxTier := "P50"
	if gib > 4096 {
		maxTier = "P80"
	}
	var out []map[string]any
	for _, t := range storageTiers[tierRank(baselineTier[gib]) : tierRank(maxTier)+1] {
		out = append(out, map[string]any{"name": t, "iops": tierIOPS[t], "status": "Available"})
	}
	return out
}

func feature(name string, on bool) map[string]any {
	status := "Disabled"
	if on {
		status = "Enabled"
	}
	return map[string]any{"name": name, "status": status}
}

// current renders the offer as api-versions from 2023-03-01-preview do.
func (o offer) current() map[string]any {
	var editions []map[string]any
	for _, e := range o.editions {
		var skus []map[string]any
		for _, s := range e.skus {
			skus = append(skus, map[string]any{
				"name": s.name, "vCores": s.vCores, "supportedMemoryPerVcoreMb": s.memGiB * 1024 / max(s.vCores, 1),
				"supportedZones": zones, "supportedHaMode": []string{}, "supportedFeatures": []any{},
				"securityProfile": "Standard", "status": "Available",
			})
		}
		var sizes []map[string]any
		for _, gib := range storageSizes {
			sizes = append(sizes, map[string]any{
				"storageSizeMb": int64(gib) * 1024, "supportedIops": storageIOPS(gib),
				"defaultIopsTier": baselineTier[gib], "supportedIopsTiers": tiersFor(gib), "status": "Available",
			})
		}
		editions = append(editions, map[string]any{
			"name": e.tier, "defaultSkuName": e.defaultSKU, "status": "Available",
			"supportedServerSkus": skus,
			"supportedStorageEditions": []map[string]any{
				{"name": "ManagedDisk", "defaultStorageSizeMb": 128 * 1024, "supportedStorageMb": sizes, "status": "Available"},
				{"name": "ManagedDiskV2", "defaultStorageSizeMb": 128 * 1024, "status": "Available", "supportedStorageMb": []map[string]any{{
					"storageSizeMb": int64(storageSizes[0]) * 1024, "maximumStorageSizeMb": int64(storageSizes[len(storageSizes)-1]) * 1024,
					"supportedIops": 3000, "supportedMaximumIops": 80000, "supportedThroughput": 125, "supportedMaximumThroughput": 1200,
					"status": "Available",
				}}},
			},
		})
	}
	var versions []map[string]any
	for _, v := range o.versions {
		versions = append(versions, map[string]any{"name": v, "supportedVersionsToUpgrade": o.upgrades[v], "supportedFeatures": []any{}, "status": "Available"})
	}
	return map[string]any{
		"name":                    "FlexibleServerCapabilities",
		"supportedServerEditions": editions,
		"supportedServerVersions": versions,
		"supportedFeatures": []map[string]any{
			feature("OfferRestricted", false), feature("ZoneRedundantHa", false), feature("ZoneRedundantHaAndGeoBackup", false),
			feature("GeoBackup", false), feature("FastProvisioning", false), feature("StorageAutoGrowth", true),
			feature("OnlineResize", false), feature("IndexTuning", false),
		},
		"fastProvisioningSupported":            "Disabled",
		"supportedFastProvisioningEditions":    []any{},
		"geoBackupSupported":                   "Disabled",
		"zoneRedundantHaSupported":             "Disabled",
		"zoneRedundantHaAndGeoBackupSupported": "Disabled",
		"storageAutoGrowthSupported":           "Enabled",
		"onlineResizeSupported":                "Disabled",
		"restricted":                           "Disabled",
		"status":                               "Available",
	}
}

// legacy renders the offer as api-versions before 2023-03-01-preview do.
func (o offer) legacy() map[string]any {
	var editions []map[string]any
	for _, e := range o.editions {
		var vcores []map[string]any
		for _, s := range e.skus {
			vcores = append(vcores, map[string]any{
				"name": s.name, "vCores": s.vCores, "supportedMemoryPerVcoreMB": s.memGiB * 1024 / max(s.vCores, 1), "status": "Available",
			})
		}
		var versions []map[string]any
		for _, v := range o.versions {
			versions = append(versions, map[string]any{"name": v, "supportedVersionsToUpgrade": o.upgrades[v], "supportedVcores": vcores, "status": "Available"})
		}
		var sizes []map[string]any
		for _, gib := range storageSizes {
			mb := int64(gib) * 1024
			sizes = append(sizes, map[string]any{"name": fmt.Sprint(mb), "storageSizeMB": mb, "supportedIops": storageIOPS(gib), "status": "Available"})
		}
		editions = append(editions, map[string]any{
			"name": e.tier, "status": "Available", "supportedServerVersions": versions,
			"supportedStorageEditions": []map[string]any{{"name": "ManagedDisk", "supportedStorageMB": sizes, "status": "Available"}},
		})
	}
	return map[string]any{
		"zone": "none", "supportedHAMode": []string{}, "geoBackupSupported": false, "zoneRedundantHaSupported": false,
		"zoneRedundantHaAndGeoBackupSupported": false, "supportedFlexibleServerEditions": editions,
		"supportedHyperscaleNodeEditions": []any{}, "fastProvisioningSupported": false,
		"supportedFastProvisioningEditions": []any{}, "status": "Available",
	}
}

// render answers the offer in the shape of the request's api-version, as
// a one-page list.
func (o offer) render(r *arm.Request) *arm.Response {
	doc := o.legacy()
	if arm.CompareAPIVersions(r.APIVersion, capabilitiesShapeSince) >= 0 {
		doc = o.current()
	}
	return arm.OK(map[string]any{"value": []any{doc}})
}

// locationCapabilities serves GET …/locations/{location}/capabilities.
func (p *Provider) locationCapabilities(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	return p.theOffer().render(r), nil
}

// serverCapabilities serves GET …/flexibleServers/{name}/capabilities:
// what the server may change to (its compute size and storage, within its
// major version, and the majors it can be upgraded to).
func (p *Provider) serverCapabilities(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	server, err := p.loadServer(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	o := p.theOffer()
	o.versions = []string{server.Properties.Version}
	return o.render(r), nil
}

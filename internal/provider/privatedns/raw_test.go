package privatedns

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRawRequests sends malformed and odd requests that the SDK would not,
// and checks every answer is a 4xx ARM error (never a 5xx, never a panic).
func TestRawRequests(t *testing.T) {
	e := newEnv(t, "net")
	vnet := e.putVNet(sub, "net", "vnet1")
	e.createZone("rg1", zone, nil)
	if _, err := e.putLink("rg1", zone, "l1", vnet, false); err != nil {
		t.Fatal(err)
	}
	base := "/subscriptions/" + sub + "/resourceGroups/rg1/providers/Microsoft.Network/privateDnsZones/"
	for _, tc := range []struct {
		method, path, body string
		ok                 bool // a valid request after all
	}{
		{"PUT", zone, `null`, false},
		{"PUT", zone, `[]`, false},
		{"PUT", zone, `{"location":"global","tags":"x"}`, false},
		{"PUT", zone, ``, false},
		{"PATCH", zone, `{"location":"westus"}`, false},
		{"PUT", zone + "/A/x", `null`, false},
		{"PUT", zone + "/A/x", `{"properties":null}`, false},
		{"PUT", zone + "/A/x", `{"properties":{"ttl":"60"}}`, false},
		{"PUT", zone + "/A/x", `{"properties":{"ttl":60,"aRecords":[null]}}`, false},
		{"PUT", zone + "/A/x", `{"properties":{"ttl":60,"aRecords":[{"ipv4Address":null}]}}`, false},
		{"PUT", zone + "/TXT/x", `{"properties":{"ttl":60,"txtRecords":[{"value":[null]}]}}`, false},
		{"PUT", zone + "/MX/x", `{"properties":{"ttl":60,"mxRecords":[null,{}]}}`, false},
		{"PUT", zone + "/SRV/x", `{"properties":{"ttl":60,"srvRecords":[{"port":1}]}}`, false},
		{"PUT", zone + "/SOA/@", `{"properties":{"ttl":60,"soaRecord":{"email":""}}}`, false},
		{"PUT", zone + "/NS/x", `{"properties":{"ttl":60}}`, false},
		{"PATCH", zone + "/A/missing", `{"properties":{"ttl":60}}`, false},
		{"PUT", zone + "/virtualNetworkLinks/l2", `{"location":"global","properties":{"virtualNetwork":null}}`, false},
		{"PUT", zone + "/virtualNetworkLinks/l2", `{"location":"global","properties":{"virtualNetwork":{"id":"not an id"}}}`, false},
		{"PUT", zone + "/virtualNetworkLinks/l2", `{"location":"global","properties":{"virtualNetwork":{"id":"/subscriptions/a|b/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v"}}}`, false},
		{"PUT", zone + "/virtualNetworkLinks/bad%20name", `{"location":"global","properties":{"virtualNetwork":{"id":"` + vnet + `"}}}`, false},
		{"PATCH", zone + "/virtualNetworkLinks/l1", `{"properties":{"virtualNetwork":{"id":null},"registrationEnabled":null}}`, true},
		{"PATCH", zone + "/virtualNetworkLinks/l1", `{"properties":{"virtualNetwork":{"id":"` + vnet + `x"}}}`, false},
		{"PATCH", zone + "/virtualNetworkLinks/l1", `{"location":"eastus"}`, false},
		{"DELETE", zone + "/SOA/x", ``, false},
		{"GET", zone + "/ALL/x", ``, false},
		{"POST", zone + "/A/x", `{}`, false},
		{"GET", zone + "/virtualNetworkLinks/l1/extra", ``, false},
	} {
		t.Run(tc.method+" "+tc.path+" "+tc.body, func(t *testing.T) {
			req, err := http.NewRequestWithContext(e.ctx, tc.method, e.srv.URL+base+tc.path+"?api-version="+APIVersion, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer armtest")
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.srv.Options.Transport.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if tc.ok {
				if resp.StatusCode >= 300 {
					t.Fatalf("answered %d %s", resp.StatusCode, b)
				}
				return
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if resp.StatusCode < 400 || resp.StatusCode >= 500 || json.Unmarshal(b, &body) != nil || body.Error.Code == "" {
				t.Fatalf("answered %d %s", resp.StatusCode, b)
			}
			t.Logf("%d %s: %s", resp.StatusCode, body.Error.Code, body.Error.Message)
		})
	}
	// Nothing above changed the zone.
	if got := counts(e.getZone("rg1", zone)); got != [3]int64{1, 1, 0} {
		t.Fatalf("zone counts %v", got)
	}
}

package network

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestLROShape checks the wire shape of writes (reference §A.4, network
// row): PUT 201/200 with provisioningState Succeeded and an
// Azure-AsyncOperation that reports Succeeded; DELETE 202 with Location and
// Azure-AsyncOperation, 204 when there is nothing; PATCH a plain 200.
func TestLROShape(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	base := e.srv.URL + "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Network/"
	q := "?api-version=2025-01-01"
	for _, c := range []struct{ path, body string }{
		{"virtualNetworks/v", `{"location":"West Europe","properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]}}}`},
		{"virtualNetworks/v/subnets/s", `{"properties":{"addressPrefix":"10.0.1.0/24"}}`},
		{"networkSecurityGroups/n", `{"location":"westeurope"}`},
		{"networkSecurityGroups/n/securityRules/r", `{"properties":{"priority":100,"direction":"Inbound","access":"Allow","protocol":"Tcp","sourcePortRange":"*","destinationPortRange":"22","sourceAddressPrefix":"*","destinationAddressPrefix":"*"}}`},
		{"applicationSecurityGroups/a", `{"location":"westeurope"}`},
		{"routeTables/t", `{"location":"westeurope"}`},
		{"routeTables/t/routes/r", `{"properties":{"addressPrefix":"0.0.0.0/0","nextHopType":"Internet"}}`},
		{"networkInterfaces/nic", `{"location":"westeurope","properties":{"ipConfigurations":[{"name":"c","properties":{"subnet":{"id":"` + subnetID("rg", "v", "s") + `"}}}]}}`},
	} {
		for i, want := range []int{http.StatusCreated, http.StatusOK} {
			code, body, h := e.rawURL(http.MethodPut, base+c.path+q, c.body)
			if code != want {
				t.Fatalf("PUT %s #%d = %d %s, want %d", c.path, i, code, body, want)
			}
			var res struct {
				Properties struct {
					ProvisioningState string `json:"provisioningState"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(body, &res); err != nil || res.Properties.ProvisioningState != "Succeeded" {
				t.Errorf("PUT %s body = %s", c.path, body)
			}
			op := h.Get("Azure-AsyncOperation")
			if !strings.Contains(op, "/providers/Microsoft.Network/locations/westeurope/operations/") || h.Get("Retry-After") == "" {
				t.Errorf("PUT %s headers = %v", c.path, h)
			}
			if code, body, _ := e.rawURL(http.MethodGet, op, ""); code != 200 || !strings.Contains(string(body), `"status":"Succeeded"`) {
				t.Errorf("status of PUT %s = %d %s", c.path, code, body)
			}
		}
	}
	for _, path := range []string{"virtualNetworks/v", "networkSecurityGroups/n", "applicationSecurityGroups/a", "routeTables/t", "networkInterfaces/nic"} {
		code, body, h := e.rawURL(http.MethodPatch, base+path+q, `{"tags":{"a":"b"}}`)
		if code != http.StatusOK || h.Get("Azure-AsyncOperation") != "" || !strings.Contains(string(body), `"tags":{"a":"b"}`) {
			t.Errorf("PATCH %s = %d %v %s", path, code, h, body)
		}
	}
	for _, path := range []string{"networkInterfaces/nic", "virtualNetworks/v/subnets/s", "virtualNetworks/v", "networkSecurityGroups/n/securityRules/r",
		"networkSecurityGroups/n", "applicationSecurityGroups/a", "routeTables/t/routes/r", "routeTables/t"} {
		code, body, h := e.rawURL(http.MethodDelete, base+path+q, "")
		if code != http.StatusAccepted || h.Get("Location") == "" || h.Get("Azure-AsyncOperation") == "" {
			t.Fatalf("DELETE %s = %d %v %s", path, code, h, body)
		}
		if code, _, _ := e.rawURL(http.MethodGet, h.Get("Location"), ""); code != http.StatusNoContent {
			t.Errorf("Location of DELETE %s = %d, want 204 (done)", path, code)
		}
		if code, _, _ := e.rawURL(http.MethodDelete, base+path+q, ""); code != http.StatusNoContent {
			t.Errorf("second DELETE %s = %d, want 204", path, code)
		}
	}
}

package daemon

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/privlink/privlink/internal/arm"
	"github.com/privlink/privlink/internal/provider/postgres"
)

// CloudName is the name privlinkd gives its cloud in the metadata
// endpoints document (what `az cloud register` records unless told
// otherwise).
const CloudName = "privlink"

// metadataAPIVersions are the api-versions of GET /metadata/endpoints that
// ARM answers: 2015-01-01 with the original document (az 2.45 reads
// it through msrestazure), the later ones with one cloud's document (az
// 2.74 asks for 2022-09-01).
var metadataAPIVersions = []string{"2022-09-01", "2020-06-01", "2019-05-01", "2015-01-01"}

// metadataHandler serves GET /metadata/endpoints, the cloud metadata that
// `az cloud register --endpoint-resource-manager URL` fetches to learn the
// identity endpoint and the token audience of a cloud. Like ARM it needs
// no token. base is privlinkd's advertised URL, audience the token
// audience ARM calls need.
//
// The fields are those Azure's own document has, with privlink's values
// where privlink serves the thing (resource manager, login, audience,
// PostgreSQL's DNS suffix) and Azure's public values elsewhere, so that a
// client that needs one finds it (az requires the graph audience to be
// set, and reads suffixes it never uses here).
func metadataHandler(base, audience string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query().Get("api-version")
		if err := arm.CheckAPIVersion("metadata/endpoints", metadataAPIVersions, v); err != nil {
			writeErr(w, r, err)
			return
		}
		if strings.EqualFold(v, "2015-01-01") {
			writeMetadata(w, legacyMetadata(base, audience))
			return
		}
		writeMetadata(w, cloudMetadata(base, audience))
	})
}

// cloudMetadata is the document of api-version 2019-05-01 and later: one
// cloud, as azure-cli's cloud._arm_to_cli_mapper reads it.
func cloudMetadata(base, audience string) map[string]any {
	return map[string]any{
		"name":            CloudName,
		"resourceManager": base + "/",
		"portal":          base + "/",
		"authentication": map[string]any{
			"loginEndpoint":    base,
			"audiences":        []string{audience},
			"tenant":           "common",
			"identityProvider": "AAD",
		},
		"graph":                    "https://graph.windows.net/",
		"graphAudience":            "https://graph.windows.net/",
		"microsoftGraphResourceId": "https://graph.microsoft.com/",
		"activeDirectoryDataLake":  "https://datalake.azure.net/",
		"batch":                    "https://batch.core.windows.net/",
		"media":                    "https://rest.media.azure.net",
		"sqlManagement":            "https://management.core.windows.net:8443/",
		"gallery":                  "https://gallery.azure.com/",
		"vmImageAliasDoc":          "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/main/arm-compute/quickstart-templates/aliases.json",
		"ossrdbmsResourceId":       "https://ossrdbms-aad.database.windows.net",
		"suffixes": map[string]any{
			"postgresqlServerEndpoint": postgres.DNSSuffix,
			"mysqlServerEndpoint":      "mysql.database.azure.com",
			"mariadbServerEndpoint":    "mariadb.database.azure.com",
			"sqlServerHostname":        "database.windows.net",
			"storage":                  "core.windows.net",
			"keyVaultDns":              "vault.azure.net",
			"acrLoginServer":           "azurecr.io",
		},
	}
}

// legacyMetadata is the document of api-version 2015-01-01, as
// msrestazure's azure_cloud._populate_from_metadata_endpoint reads it.
func legacyMetadata(base, audience string) map[string]any {
	return map[string]any{
		"galleryEndpoint": "https://gallery.azure.com/",
		"graphEndpoint":   "https://graph.windows.net/",
		"portalEndpoint":  base + "/",
		"authentication": map[string]any{
			"loginEndpoint": base,
			"audiences":     []string{audience},
		},
	}
}

func writeMetadata(w http.ResponseWriter, doc map[string]any) {
	b, err := json.Marshal(doc)
	if err != nil {
		http.Error(w, "encode metadata", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(b)
}

// Package azconfig turns a privlink credentials file into the Azure SDK
// configuration that points the official clients at privlinkd: a custom
// cloud, a client-secret credential from privlink's own identity endpoint,
// and an HTTP transport that trusts privlink's CA.
package azconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Credentials is the content of credentials.json (and of what
// `privlink principal create` prints).
type Credentials struct {
	TenantID       string `json:"tenantId"`
	SubscriptionID string `json:"subscriptionId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
	ARMEndpoint    string `json:"armEndpoint"`
	AuthorityHost  string `json:"authorityHost"`
	Audience       string `json:"audience"`
	CAFile         string `json:"caFile"`
}

// Load reads a credentials file.
func Load(path string) (Credentials, error) {
	var c Credentials
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read credentials: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse credentials %s: %w", path, err)
	}
	if c.ARMEndpoint == "" || c.ClientID == "" || c.TenantID == "" {
		return c, fmt.Errorf("credentials %s lack armEndpoint, clientId or tenantId", path)
	}
	return c, nil
}

// Config is everything an SDK client needs to talk to privlinkd.
type Config struct {
	Creds      Credentials
	Cloud      cloud.Configuration
	HTTPClient *http.Client
	Credential azcore.TokenCredential
}

// New builds the SDK configuration for c.
func New(c Credentials) (*Config, error) {
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read privlink CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", c.CAFile)
	}
	hc := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 64,
	}}
	cfg := cloud.Configuration{
		ActiveDirectoryAuthorityHost: c.AuthorityHost,
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: c.ARMEndpoint, Audience: c.Audience},
		},
	}
	cred, err := azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions:            policy.ClientOptions{Cloud: cfg, Transport: hc},
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		return nil, fmt.Errorf("client secret credential: %w", err)
	}
	return &Config{Creds: c, Cloud: cfg, HTTPClient: hc, Credential: cred}, nil
}

// ClientOptions returns options for ARM clients (NewXxxClient, NewClientFactory).
func (c *Config) ClientOptions() *arm.ClientOptions {
	return &arm.ClientOptions{ClientOptions: policy.ClientOptions{Cloud: c.Cloud, Transport: c.HTTPClient}}
}

// Scope is the token scope for ARM calls.
func (c *Config) Scope() string { return c.Creds.Audience + "/.default" }

// WithAuxiliary returns a credential and client options with which the
// SDK's ARM clients authenticate as c and send, in the
// x-ms-authorization-auxiliary header, a token of each of aux's tenants
// from that principal (arm.ClientOptions.AuxiliaryTenants): what a
// cross-tenant write, such as a peering with another tenant's network,
// needs. The credential answers a token request for one of aux's tenants
// with that principal's token, and any other with c's, as a multi-tenant
// application's credential would.
func (c *Config) WithAuxiliary(aux ...*Config) (azcore.TokenCredential, *arm.ClientOptions) {
	o := c.ClientOptions()
	tc := tenantCredential{home: c.Credential, tenants: map[string]azcore.TokenCredential{}}
	for _, a := range aux {
		tc.tenants[a.Creds.TenantID] = a.Credential
		o.AuxiliaryTenants = append(o.AuxiliaryTenants, a.Creds.TenantID)
	}
	return tc, o
}

// tenantCredential is one credential over principals of several tenants.
type tenantCredential struct {
	home    azcore.TokenCredential
	tenants map[string]azcore.TokenCredential
}

// GetToken returns the token of the principal of the tenant asked for
// (o.TenantID), or the home principal's.
func (c tenantCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if cred, ok := c.tenants[o.TenantID]; ok && o.TenantID != "" {
		o.TenantID = ""
		return cred.GetToken(ctx, o)
	}
	return c.home.GetToken(ctx, o)
}

package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// validID reports whether id looks like an ARM resource ID the portal may
// send requests for: under /subscriptions/, no query, no dot segments.
func validID(id string) bool {
	if !strings.HasPrefix(strings.ToLower(id), "/subscriptions/") || strings.ContainsAny(id, "?#\\") || len(id) > 2048 {
		return false
	}
	for _, seg := range strings.Split(id[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// serverOf is the server ID of a server's child (a connection, a firewall
// rule): its first eight segments.
func serverOf(id string) string {
	segs := strings.Split(strings.Trim(id, "/"), "/")
	if len(segs) > 8 {
		segs = segs[:8]
	}
	return "/" + strings.Join(segs, "/")
}

// serveAction performs one change the Networking blade offers, as an ARM
// request with the principal's token: approve, reject or remove a private
// endpoint connection (with a description), add or delete a firewall rule,
// enable or disable public access. The API's refusal is shown on the
// blade; a long-running change goes to its progress page.
func (p *Portal) serveAction(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	id, action := f.Get("id"), f.Get("action")
	if !validID(id) {
		p.render(w, http.StatusBadRequest, "resource", layout{Title: "Bad request", S: s, Crumbs: crumbsOf(""),
			Error: "InvalidResourceId: the form's id '" + id + "' is not a resource ID."})
		return
	}
	server := serverOf(id)
	var method, path string
	var body any
	switch action {
	case "approve", "reject":
		status := map[string]string{"approve": "Approved", "reject": "Rejected"}[action]
		method, path = http.MethodPut, id
		body = map[string]any{"properties": map[string]any{"privateLinkServiceConnectionState": map[string]any{
			"status": status, "description": f.Get("description")}}}
	case "remove", "firewall-delete":
		method, path = http.MethodDelete, id
	case "firewall-add":
		name := strings.TrimSpace(f.Get("name"))
		if name == "" || strings.ContainsAny(name, "/?#") {
			p.showResource(w, r, s, server, "networking", http.StatusBadRequest,
				"InvalidParameterValue: Firewall rule name: give a name (letters, digits, '-' and '_').")
			return
		}
		method, path = http.MethodPut, id+"/firewallRules/"+name
		body = map[string]any{"properties": map[string]any{"startIpAddress": strings.TrimSpace(f.Get("start")), "endIpAddress": strings.TrimSpace(f.Get("end"))}}
	case "public-access":
		method, path = http.MethodPatch, id
		body = map[string]any{"properties": map[string]any{"network": map[string]any{"publicNetworkAccess": f.Get("value")}}}
	default:
		p.showResource(w, r, s, server, "networking", http.StatusBadRequest, fmt.Sprintf("UnknownAction: the portal has no action '%s'.", action))
		return
	}
	c := p.client(r, s)
	resp, err := c.do(r.Context(), method, path, body)
	if err != nil {
		p.log.Info("portal: the API refused an action", "action", action, "id", path, "err", err)
		status := http.StatusInternalServerError
		if resp != nil {
			status = resp.Status
		}
		p.showResource(w, r, s, server, "networking", status, errorText(err))
		return
	}
	back := viewURLBlade(server, "networking")
	if op := resp.Header.Get("Azure-AsyncOperation"); op != "" {
		u, err := url.Parse(op)
		if err == nil && validID(u.Path) {
			st, err := p.operationStatus(r.Context(), c, u.Path)
			switch {
			case err != nil:
				p.showResource(w, r, s, server, "networking", http.StatusOK, errorText(err))
				return
			case st.Status == "Failed" || st.Status == "Canceled":
				p.showResource(w, r, s, server, "networking", http.StatusOK, st.errorText())
				return
			case st.Status != "Succeeded":
				http.Redirect(w, r, Prefix+"/operation?"+url.Values{"op": {u.Path}, "id": {server}, "blade": {"networking"}}.Encode(), http.StatusSeeOther)
				return
			}
		}
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// opStatus is an Azure-AsyncOperation answer.
type opStatus struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	StartTime string `json:"startTime"`
	EndTime   string `json:"endTime,omitempty"`
	Error     *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func (o *opStatus) errorText() string {
	if o.Error == nil {
		return "OperationFailed: the operation " + o.Status + "."
	}
	return o.Error.Code + ": " + o.Error.Message
}

func (p *Portal) operationStatus(ctx context.Context, c *client, path string) (*opStatus, error) {
	var st opStatus
	if err := c.get(ctx, path, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// operationPage is the progress of a long-running operation.
type operationPage struct {
	Op        string
	StatusURL string
	Status    *opStatus
	Back      string
	BackName  string
}

// opQuery reads and checks the operation page's query: the status path
// (an Azure-AsyncOperation path under /subscriptions/) and the resource
// to go back to.
func opQuery(r *http.Request) (op, id, blade string, ok bool) {
	q := r.URL.Query()
	op, id, blade = q.Get("op"), q.Get("id"), q.Get("blade")
	ok = validID(op) && strings.Contains(strings.ToLower(op), "/operations/") && validID(id)
	return
}

// serveOperation shows an operation's progress; the page polls
// serveOperationStatus until it ends.
func (p *Portal) serveOperation(w http.ResponseWriter, r *http.Request, s *session) {
	op, id, blade, ok := opQuery(r)
	if !ok {
		p.render(w, http.StatusBadRequest, "resource", layout{Title: "Bad request", S: s, Crumbs: crumbsOf(""),
			Error: "InvalidOperation: the link does not name an operation and a resource."})
		return
	}
	st, err := p.operationStatus(r.Context(), p.client(r, s), op)
	if err != nil {
		p.fail(w, s, crumbsOf(id), err)
		return
	}
	if blade != "networking" {
		blade = ""
	}
	back := viewURL(id)
	if blade != "" {
		back = viewURLBlade(id, blade)
	}
	p.render(w, http.StatusOK, "operation", layout{Title: "Operation " + st.Name, S: s, Crumbs: crumbsOf(id),
		Page: operationPage{Op: op, StatusURL: Prefix + "/operation/status?" + url.Values{"op": {op}, "id": {id}}.Encode(), Status: st, Back: back, BackName: lastSegment(id)}})
}

// serveOperationStatus answers the operation's status as JSON for the
// progress page's script.
func (p *Portal) serveOperationStatus(w http.ResponseWriter, r *http.Request, s *session) {
	op, _, _, ok := opQuery(r)
	if !ok {
		http.Error(w, "not an operation", http.StatusBadRequest)
		return
	}
	st, err := p.operationStatus(r.Context(), p.client(r, s), op)
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "Unknown", "error": errorText(err)})
		return
	}
	out := map[string]string{"status": st.Status, "endTime": st.EndTime}
	if st.Status == "Failed" || st.Status == "Canceled" {
		out["error"] = st.errorText()
	}
	_ = json.NewEncoder(w).Encode(out)
}

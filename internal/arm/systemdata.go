package arm

import "time"

// SystemData is ARM's systemData: who created and last modified a
// resource, and when.
type SystemData struct {
	CreatedBy          string    `json:"createdBy,omitempty"`
	CreatedByType      string    `json:"createdByType,omitempty"`
	CreatedAt          time.Time `json:"createdAt"`
	LastModifiedBy     string    `json:"lastModifiedBy,omitempty"`
	LastModifiedByType string    `json:"lastModifiedByType,omitempty"`
	LastModifiedAt     time.Time `json:"lastModifiedAt"`
}

// NewSystemData is the systemData of a resource c creates at now.
func NewSystemData(c *Caller, now time.Time) *SystemData {
	by, typ := c.Name()
	return &SystemData{CreatedBy: by, CreatedByType: typ, CreatedAt: now, LastModifiedBy: by, LastModifiedByType: typ, LastModifiedAt: now}
}

// Touch records that c modified the resource at now; a nil sd stays nil.
func (sd *SystemData) Touch(c *Caller, now time.Time) {
	if sd == nil {
		return
	}
	sd.LastModifiedBy, sd.LastModifiedByType = c.Name()
	sd.LastModifiedAt = now
}

// Name names the caller as systemData does: privlink's callers are
// service principals, which Azure names by application (client) ID. A nil
// caller has no name.
func (c *Caller) Name() (by, typ string) {
	switch {
	case c == nil:
		return "", ""
	case c.ClientID != "":
		return c.ClientID, "Application"
	default:
		return c.ObjectID, "Application"
	}
}

package session

import (
	"fmt"
	"strings"

	"github.com/agentd/agentd/internal/catalog"
)

// model is what a turn needs to know about a model.
type model struct {
	ID, Provider, Name string // Name: upstream name, never empty
	In, Out            float64
	Enabled            bool
}

// lookupModel finds id in the model catalog when there is one (models
// added over REST live there), else in the config.
func (m *Manager) lookupModel(id string) (model, bool) {
	if m.catalog != nil {
		c, ok := m.catalog.Model(id)
		return fromCatalog(c), ok
	}
	c, ok := m.cfg.Current().Model(id)
	if !ok {
		return model{}, false
	}
	name := c.Name
	if name == "" {
		name = c.ID
	}
	return model{ID: c.ID, Provider: c.Provider, Name: name, In: c.InputPricePerMTok, Out: c.OutputPricePerMTok, Enabled: c.IsEnabled()}, true
}

func fromCatalog(c catalog.Model) model {
	name := c.Name
	if name == "" {
		name = c.ID
	}
	return model{ID: c.ID, Provider: c.Provider, Name: name, In: c.InputPricePerMTok, Out: c.OutputPricePerMTok, Enabled: c.Enabled}
}

// enabledModels lists the ids a session may be pinned to.
func (m *Manager) enabledModels() []string {
	var ids []string
	if m.catalog != nil {
		for _, c := range m.catalog.EnabledModels() {
			ids = append(ids, c.ID)
		}
		return ids
	}
	for _, c := range m.cfg.Current().Models {
		if c.IsEnabled() {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// checkModel accepts known, enabled models.
func (m *Manager) checkModel(id string) error {
	mo, ok := m.lookupModel(id)
	if !ok {
		return fmt.Errorf("%w %q; available: %s", ErrUnknownModel, id, strings.Join(m.enabledModels(), ", "))
	}
	if !mo.Enabled {
		return fmt.Errorf("%w: model %q is disabled", ErrInvalid, id)
	}
	return nil
}

func (m *Manager) describeModel(pinned string) string {
	cur := "Model: " + m.cfg.Current().Agent.DefaultModel + " (default)"
	if pinned != "" {
		cur = "Model: " + pinned + " (pinned)"
	}
	return cur + ". Available: " + strings.Join(m.enabledModels(), ", ") + "."
}

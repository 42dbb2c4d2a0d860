package nab

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// Profile is one NAB application profile: the cost matrix of the scorer.
type Profile struct {
	// Name is the profile's key in profiles.json ("standard", "reward_low_FP_rate", …).
	Name string
	// TPWeight is the reward of the earliest possible detection of a window.
	TPWeight float64
	// FPWeight is the cost of a detection outside every window (before any window, in full).
	FPWeight float64
	// FNWeight is the cost of a window without any detection.
	FNWeight float64
}

// Validate refuses a profile the scorer cannot use.
func (p Profile) Validate() error {
	switch {
	case p.Name == "":
		return fmt.Errorf("nab: profile: Name is empty")
	case !(p.TPWeight > 0):
		return fmt.Errorf("nab: profile %s: TPWeight must be > 0, got %v", p.Name, p.TPWeight)
	case !(p.FPWeight >= 0):
		return fmt.Errorf("nab: profile %s: FPWeight must be >= 0, got %v", p.Name, p.FPWeight)
	case !(p.FNWeight >= 0):
		return fmt.Errorf("nab: profile %s: FNWeight must be >= 0, got %v", p.Name, p.FNWeight)
	}
	return nil
}

// Profiles returns NAB v1.1's three profiles (config/profiles.json) in the order
// standard, reward_low_FP_rate, reward_low_FN_rate.
func Profiles() []Profile {
	return []Profile{
		{Name: "standard", TPWeight: 1, FPWeight: 0.11, FNWeight: 1},
		{Name: "reward_low_FP_rate", TPWeight: 1, FPWeight: 0.22, FNWeight: 1},
		{Name: "reward_low_FN_rate", TPWeight: 1, FPWeight: 0.11, FNWeight: 2},
	}
}

// LoadProfiles reads a NAB profiles.json, in the order of Profiles for the three known names and
// then by name.
func LoadProfiles(path string) ([]Profile, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorpus, err)
	}
	var m map[string]struct {
		CostMatrix struct {
			TP *float64 `json:"tpWeight"`
			FP *float64 `json:"fpWeight"`
			FN *float64 `json:"fnWeight"`
		}
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorpus, path, err)
	}
	order := map[string]int{"standard": 0, "reward_low_FP_rate": 1, "reward_low_FN_rate": 2}
	var out []Profile
	for name, v := range m {
		cm := v.CostMatrix
		if cm.TP == nil || cm.FP == nil || cm.FN == nil {
			return nil, fmt.Errorf("%w: %s: profile %s: CostMatrix needs tpWeight, fpWeight and fnWeight", ErrCorpus, path, name)
		}
		p := Profile{Name: name, TPWeight: *cm.TP, FPWeight: *cm.FP, FNWeight: *cm.FN}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorpus, path, err)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		oi, iok := order[out[i].Name]
		oj, jok := order[out[j].Name]
		if iok != jok {
			return iok
		}
		if iok {
			return oi < oj
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

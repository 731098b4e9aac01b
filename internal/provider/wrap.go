package provider

// WrapProviders replaces each provider of the chain by wrap(provider)
// (metrics, tracing). Call it before the first Complete; the wrapper must
// keep the provider's Name.
func (f *Failover) WrapProviders(wrap func(Provider) Provider) {
	for i := range f.entries {
		f.entries[i].Provider = wrap(f.entries[i].Provider)
	}
}

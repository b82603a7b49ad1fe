package storage

// filesRoutes binds the files endpoints (sdk.storage.files).
func (e *Engine) filesRoutes() []route {
	return nil
}

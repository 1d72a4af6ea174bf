"""Reports: plot tables, figures, the offline plots page and the model card."""

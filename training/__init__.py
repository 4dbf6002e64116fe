"""Everything only training needs: the tiny model's data stream and trainer. A render never
imports this package."""

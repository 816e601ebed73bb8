-- Event-type filters without a category are rare (audit exports): they walk the global
-- order index and filter. One index fewer on every append.
DROP INDEX events_type_order;

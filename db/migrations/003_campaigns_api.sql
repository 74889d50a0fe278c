-- 003_campaigns_api: what the campaign and lead routes of the REST API need beyond 001.
-- campaigns.country: ISO 3166 code whose numbering reads the national numbers of lead
-- imports (NULL = numbers must be international). leads.external_id: the importer's own
-- id for the lead. One lead per (campaign, phone): imports skip the numbers already there.

ALTER TABLE campaigns ADD COLUMN country text;
ALTER TABLE leads ADD COLUMN external_id text;
CREATE INDEX campaigns_created ON campaigns (created_at DESC, id DESC);
CREATE INDEX leads_created ON leads (created_at DESC, id DESC);
CREATE INDEX leads_external_id ON leads (external_id) WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX leads_campaign_phone ON leads (campaign_id, phone_e164)
	WHERE campaign_id IS NOT NULL;

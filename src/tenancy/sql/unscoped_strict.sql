        RAISE EXCEPTION 'landlord tenancy: no tenant context; run queries through a tenant-scoped transaction'
            USING ERRCODE = '42501';

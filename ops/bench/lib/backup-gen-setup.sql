-- ops/bench/lib/backup-gen-setup.sql — used by ops/bench/backup.
-- Prepares a tenant database for generating realistic, text-heavy data:
-- a support-desk table pair (`tickets`, `ticket_comments`) next to the
-- tenant schema's users/projects/activity_log, and a throw-away schema
-- `bench_gen` with word lists and text generators (dropped again by the
-- benchmark before it dumps anything).
--
-- Text is assembled from a vocabulary of ~450 English words picked with a
-- skewed (roughly Zipf-like) distribution, with capitalised sentences,
-- punctuation, paragraphs, greetings and sign-offs: it compresses like
-- prose (about 3x), unlike md5() hex noise (incompressible) or repeated
-- pgbench filler (compresses absurdly well).
\set ON_ERROR_STOP 1

CREATE TABLE tickets (
    id          bigserial PRIMARY KEY,
    project_id  bigint NOT NULL REFERENCES projects (id),
    reporter_id bigint NOT NULL REFERENCES users (id),
    subject     text NOT NULL,
    body        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('new', 'open', 'pending', 'on_hold', 'solved', 'closed')),
    priority    smallint NOT NULL CHECK (priority BETWEEN 1 AND 4),
    tags        text[] NOT NULL DEFAULT '{}',
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE INDEX tickets_project ON tickets (project_id);
CREATE INDEX tickets_reporter ON tickets (reporter_id);
CREATE INDEX tickets_status_created ON tickets (status, created_at);

CREATE TABLE ticket_comments (
    id         bigserial PRIMARY KEY,
    ticket_id  bigint NOT NULL REFERENCES tickets (id) ON DELETE CASCADE,
    author_id  bigint NOT NULL REFERENCES users (id),
    body       text NOT NULL,
    internal   boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_comments_ticket ON ticket_comments (ticket_id, created_at);

CREATE SCHEMA bench_gen;

-- Most frequent words first: pick() below favours the start of the list.
CREATE FUNCTION bench_gen.words() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
SELECT ARRAY[
 'the','to','and','a','of','i','is','in','it','that','we','you','for','this','on','not','be','with','our','are',
 'have','when','as','but','can','from','was','they','my','at','or','an','if','all','after','there','would','will',
 'please','do','so','no','get','now','one','again','some','still','just','been','which','could','any','also','what',
 'it''s','don''t','can''t','we''re','i''m','out','up','only','time','more','their','them','see','there''s','should',
 'page','account','user','users','error','issue','problem','data','report','invoice','order','customer','team',
 'email','message','system','server','update','login','password','access','export','import','file','files','upload',
 'download','settings','dashboard','project','projects','ticket','support','request','response','service','api',
 'key','token','browser','mobile','app','version','release','feature','bug','screen','button','link','form','field',
 'value','list','table','chart','payment','card','billing','plan','subscription','trial','license','seat','seats',
 'admin','role','permission','permissions','group','workspace','integration','webhook','sync','calendar','task',
 'tasks','comment','comments','note','notification','notifications','alert','log','logs','timeout','connection',
 'network','database','backup','restore','search','filter','results','query','column','row','rows','sheet',
 'document','pdf','csv','attachment','image','photo','video','link','address','phone','number','date','week',
 'month','year','today','yesterday','tomorrow','morning','afternoon','evening','monday','tuesday','wednesday',
 'thursday','friday','weekend','hour','minutes','seconds','day','days','shows','showing','shown','says','said',
 'tried','try','trying','works','working','worked','fails','failed','failing','broken','slow','fast','stuck',
 'missing','wrong','correct','different','same','new','old','first','last','next','previous','other','another',
 'several','many','few','every','each','both','whole','empty','blank','full','large','small','long','short',
 'high','low','open','closed','pending','active','expired','disabled','enabled','available','unavailable',
 'possible','impossible','able','unable','happy','sorry','thanks','thank','hello','hi','regards','best','kind',
 'help','helped','need','needs','needed','want','wanted','expect','expected','unexpected','happen','happens',
 'happened','notice','noticed','think','thought','know','known','believe','seem','seems','seemed','look','looks',
 'looked','check','checked','confirm','confirmed','verify','verified','reset','resend','refresh','reload',
 'restart','clear','cleared','delete','deleted','remove','removed','add','added','change','changed','create',
 'created','edit','edited','save','saved','send','sent','receive','received','share','shared','invite','invited',
 'assign','assigned','move','moved','copy','copied','click','clicked','select','selected','enter','entered',
 'type','typed','sign','signed','log','logged','connect','connected','disconnect','load','loading','loaded',
 'because','since','until','while','before','during','through','about','into','over','under','between',
 'without','within','around','across','behind','instead','however','although','though','maybe','perhaps',
 'probably','actually','already','always','never','sometimes','often','usually','really','quite','very',
 'too','almost','exactly','completely','immediately','quickly','recently','currently','finally','unfortunately',
 'apparently','anyway','here','where','why','how','who','whom','whose','then','than','these','those','such',
 'your','his','her','its','us','me','him','she','he','it','colleague','manager','client','vendor','partner',
 'company','office','department','finance','sales','marketing','engineering','legal','operations','warehouse',
 'shipment','delivery','package','tracking','refund','credit','discount','price','quote','contract','renewal',
 'migration','configuration','environment','production','staging','certificate','domain','redirect','cache',
 'cookie','session','header','request','limit','quota','storage','memory','disk','cpu','latency','outage',
 'incident','maintenance','schedule','deadline','priority','urgent','critical','minor','major','blocking',
 'workaround','solution','fix','fixed','patch','documentation','guide','tutorial','example','screenshot','steps',
 'reproduce','reproduced','attached','below','above','following','mentioned','described','related','similar'
]::text[]
$$;

CREATE FUNCTION bench_gen.first_names() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
SELECT ARRAY['James','Mary','Robert','Patricia','John','Jennifer','Michael','Linda','David','Elizabeth','William',
 'Barbara','Richard','Susan','Joseph','Jessica','Thomas','Sarah','Charles','Karen','Christopher','Lisa','Daniel',
 'Nancy','Matthew','Betty','Anthony','Sandra','Mark','Margaret','Donald','Ashley','Steven','Kimberly','Andrew',
 'Emily','Paul','Donna','Joshua','Michelle','Kenneth','Carol','Kevin','Amanda','Brian','Melissa','George',
 'Deborah','Timothy','Stephanie','Ronald','Rebecca','Jason','Sharon','Edward','Laura','Jeffrey','Cynthia',
 'Ryan','Dorothy','Jacob','Amy','Gary','Kathleen','Nicholas','Angela','Eric','Shirley','Jonathan','Emma',
 'Stephen','Brenda','Larry','Pamela','Justin','Nicole','Scott','Anna','Brandon','Samantha','Benjamin',
 'Katherine','Samuel','Christine','Gregory','Debra','Alexander','Rachel','Patrick','Carolyn','Frank','Janet',
 'Raymond','Maria','Jack','Olivia','Dennis','Heather','Jerry','Helen','Tyler','Catherine','Aaron','Diane',
 'Jose','Julie','Adam','Victoria','Nathan','Joyce','Henry','Lauren','Zachary','Kelly','Douglas','Christina',
 'Peter','Ruth','Kyle','Joan','Noah','Virginia','Ethan','Judith','Jeremy','Evelyn','Christian','Hannah',
 'Walter','Andrea','Keith','Megan','Austin','Cheryl','Roger','Jacqueline','Terry','Madison','Sean','Teresa',
 'Gerald','Abigail','Carl','Sophia','Dylan','Martha','Harold','Sara','Jordan','Gloria','Jesse','Janice',
 'Bryan','Kathryn','Lawrence','Ann','Arthur','Isabella','Gabriel','Judy','Bruce','Charlotte','Logan','Julia',
 'Billy','Grace','Joe','Amber','Alan','Alice','Juan','Jean','Elijah','Denise','Willie','Frances','Albert',
 'Danielle','Wayne','Marilyn','Randy','Natalie','Mason','Beverly','Vincent','Diana','Liam','Brittany','Roy',
 'Theresa','Bobby','Kayla','Caleb','Alexis','Bradley','Doris','Russell','Lori','Lucas','Tiffany']::text[]
$$;

CREATE FUNCTION bench_gen.last_names() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
SELECT ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez','Martinez',
 'Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore','Jackson','Martin','Lee','Perez',
 'Thompson','White','Harris','Sanchez','Clark','Ramirez','Lewis','Robinson','Walker','Young','Allen','King',
 'Wright','Scott','Torres','Nguyen','Hill','Flores','Green','Adams','Nelson','Baker','Hall','Rivera','Campbell',
 'Mitchell','Carter','Roberts','Gomez','Phillips','Evans','Turner','Diaz','Parker','Cruz','Edwards','Collins',
 'Reyes','Stewart','Morris','Morales','Murphy','Cook','Rogers','Gutierrez','Ortiz','Morgan','Cooper','Peterson',
 'Bailey','Reed','Kelly','Howard','Ramos','Kim','Cox','Ward','Richardson','Watson','Brooks','Chavez','Wood',
 'James','Bennett','Gray','Mendoza','Ruiz','Hughes','Price','Alvarez','Castillo','Sanders','Patel','Myers',
 'Long','Ross','Foster','Jimenez','Powell','Jenkins','Perry','Russell','Sullivan','Bell','Coleman','Butler',
 'Henderson','Barnes','Gonzales','Fisher','Vasquez','Simmons','Romero','Jordan','Patterson','Alexander',
 'Hamilton','Graham','Reynolds','Griffin','Wallace','Moreno','West','Cole','Hayes','Bryant','Herrera','Gibson',
 'Ellis','Tran','Medina','Aguilar','Stevens','Murray','Ford','Castro','Marshall','Owens','Harrison','Fernandez',
 'McDonald','Woods','Washington','Kennedy','Wells','Vargas','Henry','Chen','Freeman','Webb','Tucker','Guzman',
 'Burns','Crawford','Olson','Simpson','Porter','Hunter','Gordon','Mendez','Silva','Shaw','Snyder','Mason',
 'Dixon','Munoz','Hunt','Hicks','Holmes','Palmer','Wagner','Black','Robertson','Boyd','Rose','Stone','Salazar',
 'Fox','Warren','Mills','Meyer','Rice','Schmidt','Garza','Daniels','Ferguson','Nichols','Stephens','Soto',
 'Weaver','Ryan','Gardner','Payne','Grant','Dunn','Kelley','Spencer','Hawkins','Arnold','Pierce','Vazquez']::text[]
$$;

CREATE FUNCTION bench_gen.domains() RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
SELECT ARRAY['gmail.com','yahoo.com','outlook.com','hotmail.com','icloud.com','proton.me','acme-corp.com',
 'globex.io','initech.com','umbrella-health.org','stark-industries.net','wayne-enterprises.com',
 'northwind-traders.com','contoso.com','fabrikam.io','tailspin-toys.com','example.org','blue-harbor.co.uk',
 'kestrel-logistics.de','maple-analytics.ca','sunrise-dental.com.au','hooli.xyz','piedpiper.com',
 'vandelay-industries.com','dundermifflin.com','soylent.io','cyberdyne.systems','oscorp.com']::text[]
$$;

-- A random element, favouring the start of the array when skew > 1.
CREATE FUNCTION bench_gen.pick(a text[], skew float8 DEFAULT 1) RETURNS text LANGUAGE sql VOLATILE AS $$
SELECT a[1 + floor(cardinality(a) * random() ^ skew)::int]
$$;

-- nsent sentences of 4-20 words, capitalised and punctuated.
CREATE FUNCTION bench_gen.sentences(w text[], nsent int) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r text := '';
    m int := cardinality(w);
    k int;
    x text;
    p float8;
BEGIN
    FOR s IN 1..nsent LOOP
        k := 4 + floor(random() * 17)::int;
        x := w[1 + floor(m * random() ^ 2.2)::int];
        IF s > 1 THEN r := r || ' '; END IF;
        r := r || upper(left(x, 1)) || substr(x, 2);
        FOR i IN 2..k LOOP
            x := w[1 + floor(m * random() ^ 2.2)::int];
            p := random();
            IF p < 0.06 AND i < k THEN
                r := r || ' ' || x || ',';
            ELSIF p < 0.075 THEN
                r := r || ' ' || '#' || (1000 + floor(random() * 90000)::int);
            ELSE
                r := r || ' ' || x;
            END IF;
        END LOOP;
        p := random();
        r := r || CASE WHEN p < 0.08 THEN '?' WHEN p < 0.11 THEN '!' ELSE '.' END;
    END LOOP;
    RETURN r;
END
$$;

-- npara paragraphs of 1-6 sentences, separated by blank lines.
CREATE FUNCTION bench_gen.prose(w text[], npara int) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    r text := '';
BEGIN
    FOR i IN 1..npara LOOP
        IF i > 1 THEN r := r || E'\n\n'; END IF;
        r := r || bench_gen.sentences(w, 1 + floor(random() * 6)::int);
    END LOOP;
    RETURN r;
END
$$;
